pub mod moto;
pub mod throttle;
