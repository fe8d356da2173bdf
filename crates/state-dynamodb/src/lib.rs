//! # sagesync-state-dynamodb
//!
//! `[state] type = "dynamodb"`: the ledger, the cursors and the per-job leases in one DynamoDB
//! table, so that Lambda invocations in separate sandboxes and daemons on separate machines share
//! them. Every lease operation is one conditional `UpdateItem`:
//!
//! - **acquire**: granted when the job's item has no lease or an expired one; the fencing counter
//!   grows by one and the ledger entry comes back in the same response (`ALL_NEW`);
//! - **renew**, **release**: only while the lease owner and fence are still ours;
//! - **commit**: writes the entry and clears the lease in one write, conditional on owner and
//!   fence; a writer whose lease was taken over gets `false` and nothing is written.
//!
//! A synced job costs two requests (acquire, commit), plus its share of one `BatchGetItem` per
//! listing page. `due`, `failed` and `unpark` query a sparse global secondary index that holds
//! failed jobs only; `counts` and `cursors` scan the table (they serve `sagesync status`). See
//! `docs/state.md`.

//!
//! Laid out like the sinks: [`config`] (the TOML options), `client` (the SDK client and its
//! errors), `item` (how entries, leases and cursors are laid out in items: pure), `table`
//! (checking or creating the table), `store` (the [`sagesync_core::StateStore`]).

mod client;
pub mod config;
mod item;
mod store;
mod table;

pub use client::DynamoSettings;
pub use config::DynamoStateConfig;
pub use item::{FAILED_INDEX, FAILED_PK_VALUE, LEASE_GC_GRACE, NEVER, PK, TTL_ATTRIBUTE};
pub use store::DynamoState;
