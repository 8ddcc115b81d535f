//! What the two tools do, one module a command or a shared piece of one.

pub mod explain;
pub mod follow;
pub mod grow;
pub mod hex;
pub mod info;
pub mod limits;
pub mod lines;
pub mod list;
pub mod progress;
pub mod read;
pub mod record;
pub mod replay;
pub mod report;
pub mod stats;
pub mod stream;
pub mod versions;
pub mod write;
