pub mod peer;
pub mod swagger;
pub mod v2fake;
