pub mod peer;
pub mod v2fake;
pub mod swagger;
