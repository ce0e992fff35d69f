// Lets `cargo test` binaries find the libpython they were linked against;
// does nothing for the extension module maturin builds.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
