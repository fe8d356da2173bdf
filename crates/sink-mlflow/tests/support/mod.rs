pub mod child;
pub mod proxy;
pub mod server;
pub mod records;
