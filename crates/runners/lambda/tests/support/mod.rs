#[path = "../../../../source-sagemaker/tests/support/moto.rs"]
pub mod moto;
#[path = "../../../../sink-modeldb/tests/support/peer.rs"]
pub mod peer;
#[path = "../../../../state-dynamodb/tests/support/proxy.rs"]
pub mod proxy;
pub mod runtime;
