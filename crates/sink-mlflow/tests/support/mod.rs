pub mod child;
pub mod proxy;
pub mod records;
pub mod server;
