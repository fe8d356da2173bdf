//! The table: checked on first use (a sagesync table: its key, its index), or created
//! (on demand, TTL on the lease attribute, the failed-jobs index) when `create_table` says so.

use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use sagesync_core::StateError;

use crate::item::{FAILED_INDEX, PK, TTL_ATTRIBUTE};
use crate::store::DynamoState;

impl DynamoState {
    pub(crate) async fn ensure_table(&self, c: &Client) -> Result<(), StateError> {
        let unusable = |m: String| StateError::Unusable { location: self.loc(), message: m };
        let described = match c.describe_table().table_name(self.table()).send().await {
            Ok(d) => d.table,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => None,
            Err(e) => return Err(self.err("DescribeTable", e)),
        };
        let table = match described {
            Some(t) => t,
            None if self.settings.create_table => return self.create_table(c).await,
            None => {
                return Err(unusable(
                    "the table does not exist. Create it (see docs/state.md, or the SAM template), or set [state] create_table = true"
                        .into(),
                ))
            }
        };
        let keys: Vec<(String, String)> =
            table.key_schema().iter().map(|k| (k.attribute_name().to_string(), k.key_type().as_str().to_string())).collect();
        if keys != [(PK.to_string(), "HASH".to_string())] {
            return Err(unusable(format!("not a sagesync table: its key schema is {keys:?}, expected a single partition key `{PK}` (string). It was left untouched; point [state] table elsewhere")));
        }
        let pk_type =
            table.attribute_definitions().iter().find(|a| a.attribute_name() == PK).map(|a| a.attribute_type().as_str().to_string());
        if pk_type.as_deref() != Some("S") {
            return Err(unusable(format!("not a sagesync table: `{PK}` is of type {pk_type:?}, expected S. It was left untouched")));
        }
        if !table.global_secondary_indexes().iter().any(|g| g.index_name() == Some(FAILED_INDEX)) {
            return Err(unusable(format!("the table lacks the global secondary index `{FAILED_INDEX}` (partition key failed_pk, sort key arn, both strings) that failed jobs are read from; add it (docs/state.md) or let create_table make a new table")));
        }
        if table.table_status() == Some(&TableStatus::Creating) {
            self.wait_active(c).await?;
        }
        Ok(())
    }

    async fn create_table(&self, c: &Client) -> Result<(), StateError> {
        tracing::info!(table = %self.settings.table, "creating the DynamoDB state table (on-demand, TTL on {TTL_ATTRIBUTE})");
        let build = |e: aws_sdk_dynamodb::error::BuildError| StateError::Unusable {
            location: self.loc(),
            message: format!("CreateTable request: {e}"),
        };
        let created = c
            .create_table()
            .table_name(self.table())
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(KeySchemaElement::builder().attribute_name(PK).key_type(KeyType::Hash).build().map_err(build)?)
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name(PK).attribute_type(ScalarAttributeType::S).build().map_err(build)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name("failed_pk").attribute_type(ScalarAttributeType::S).build().map_err(build)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name("arn").attribute_type(ScalarAttributeType::S).build().map_err(build)?,
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(FAILED_INDEX)
                    .key_schema(KeySchemaElement::builder().attribute_name("failed_pk").key_type(KeyType::Hash).build().map_err(build)?)
                    .key_schema(KeySchemaElement::builder().attribute_name("arn").key_type(KeyType::Range).build().map_err(build)?)
                    // Only what `due` and `failed` read: lease traffic never writes to the index.
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::Include)
                            .non_key_attributes("entry")
                            .non_key_attributes("parked")
                            .non_key_attributes("next_at")
                            .build(),
                    )
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another process is creating it at the same moment.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(self.err("CreateTable", e)),
        }
        self.wait_active(c).await?;
        let spec = TimeToLiveSpecification::builder().attribute_name(TTL_ATTRIBUTE).enabled(true).build().map_err(build)?;
        match c.update_time_to_live().table_name(self.table()).time_to_live_specification(spec).send().await {
            Ok(_) => Ok(()),
            // Already enabled (by the racing creator).
            Err(e) if e.code() == Some("ValidationException") && e.message().is_some_and(|m| m.contains("already")) => Ok(()),
            Err(e) => Err(self.err("UpdateTimeToLive", e)),
        }
    }

    /// Waits (the SDK's `TableExists` waiter, up to 300 s) until the table is ACTIVE.
    async fn wait_active(&self, c: &Client) -> Result<(), StateError> {
        use aws_sdk_dynamodb::client::Waiters;
        c.wait_until_table_exists().table_name(self.table()).wait(Duration::from_secs(300)).await.map_err(|e| StateError::Backend {
            location: self.loc(),
            message: format!("the table did not become ACTIVE: {}", DisplayErrorContext(&e)),
            retryable: true,
        })?;
        Ok(())
    }
}
