mod parse;
pub use parse::*;
