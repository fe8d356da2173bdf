//! The DynamoDB store against moto's DynamoDB (server mode, real HTTP): the shared conformance
//! suite, the table created on demand, refusal of a missing or foreign table, and throttling
//! through a loopback proxy that loses nothing.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveStatus};
use sagesync_core::state::conformance;
use sagesync_core::{Acquired, Cursor, Outcome, StateStore};
use sagesync_state_dynamodb::{DynamoState, TTL_ATTRIBUTE};
use sagesync_test_support::dynamodb::Proxy;
use sagesync_test_support::moto::Moto;
use support::{fresh_table, settings, store};

async fn raw_client(url: &str) -> aws_sdk_dynamodb::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_conformance_suite() {
    let moto = Arc::new(Moto::start());
    let url = moto.url();
    conformance::run_all(&move || {
        let url = url.clone();
        Box::pin(async move { Arc::new(store(&url, &fresh_table("conf"))) as Arc<dyn StateStore> })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_is_created_on_demand_with_on_demand_billing_and_ttl() {
    let moto = Moto::start();
    let table = fresh_table("created");
    let s = store(&moto.url(), &table);
    assert_eq!(s.counts().await.unwrap().total(), 0, "first use creates the table");
    let c = raw_client(&moto.url()).await;
    let d = c.describe_table().table_name(&table).send().await.unwrap().table.unwrap();
    assert_eq!(d.billing_mode_summary().and_then(|b| b.billing_mode()), Some(&BillingMode::PayPerRequest));
    assert_eq!(d.key_schema()[0].attribute_name(), "pk");
    let gsi = d
        .global_secondary_indexes()
        .iter()
        .find(|g| g.index_name() == Some(sagesync_state_dynamodb::FAILED_INDEX))
        .expect("the failed-jobs index");
    assert_eq!(gsi.key_schema().iter().map(|k| k.attribute_name()).collect::<Vec<_>>(), ["failed_pk", "arn"]);
    let ttl = c.describe_time_to_live().table_name(&table).send().await.unwrap().time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), Some(TTL_ATTRIBUTE));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    // A second store on the same table (a second process) finds it and shares the leases.
    let other = store(&moto.url(), &table);
    let Acquired::Granted { lease, .. } = s.acquire("arn:j/1", "a", Duration::from_secs(30)).await.unwrap() else { panic!("granted") };
    assert!(matches!(other.acquire("arn:j/1", "b", Duration::from_secs(30)).await.unwrap(), Acquired::Held { owner, .. } if owner == "a"));
    assert!(s.commit(&lease, &conformance::entry("arn:j/1", Outcome::Synced)).await.unwrap());
    assert_eq!(other.counts().await.unwrap().synced, 1);
    // Eight first starts racing to create one table: every one opens it.
    let racing = fresh_table("race");
    let stores: Vec<Arc<DynamoState>> = (0..8).map(|_| Arc::new(store(&moto.url(), &racing))).collect();
    let tasks: Vec<_> = stores
        .iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move { s.open().await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every racing first start opens the table");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_foreign_table_is_refused_and_left_untouched() {
    let moto = Moto::start();
    let mut st = settings(&moto.url(), "no-such-table");
    st.create_table = false;
    let e = DynamoState::new(st).counts().await.expect_err("missing table");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("does not exist") && e.to_string().contains("create_table"), "{e}");
    let c = raw_client(&moto.url()).await;
    c.create_table()
        .table_name("invoices")
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::N).build().unwrap())
        .send()
        .await
        .unwrap();
    let e = store(&moto.url(), "invoices").counts().await.expect_err("foreign table");
    assert!(e.to_string().contains("not a sagesync table"), "{e}");
    assert_eq!(c.scan().table_name("invoices").send().await.unwrap().count(), 0, "nothing was written");
    // Unreachable: retryable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut st = settings(&format!("http://127.0.0.1:{closed}"), "t-unreachable");
    st.max_attempts = 2;
    st.connect_timeout = Duration::from_millis(300);
    let e = DynamoState::new(st).counts().await.expect_err("unreachable");
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_loses_nothing() {
    let moto = Moto::start();
    // Every third DynamoDB request answered ProvisionedThroughputExceeded.
    let proxy = Proxy::start(moto.port, 3).await;
    let table = fresh_table("throttled");
    let mut st = settings(&proxy.url(), &table);
    st.max_attempts = 10;
    st.initial_backoff = Duration::from_millis(5);
    let s = Arc::new(DynamoState::new(st));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            for j in 0..60 {
                let arn = format!("arn:j/{j:03}");
                if let Acquired::Granted { lease, .. } =
                    s.acquire(&arn, &format!("w{w}"), Duration::from_secs(30)).await.expect("acquire under throttling")
                {
                    assert!(s.commit(&lease, &conformance::entry(&arn, Outcome::Synced)).await.expect("commit under throttling"));
                    committed.push(arn);
                }
            }
            committed
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60, "every job was committed by someone");
    s.save_cursor("poll", &Cursor::default()).await.expect("cursor under throttling");
    let arns: Vec<String> = (0..60).map(|j| format!("arn:j/{j:03}")).collect();
    let got = s.jobs(&arns).await.expect("batch read under throttling");
    assert!(got.iter().all(|e| e.as_ref().is_some_and(|e| e.outcome == Outcome::Synced)), "every entry is there");
    assert_eq!(s.counts().await.expect("scan under throttling").synced, 60);
    assert!(proxy.counters.throttled.load(std::sync::atomic::Ordering::SeqCst) >= 40, "the proxy throttled requests");
    // Read through moto directly: the same ledger.
    assert_eq!(store(&moto.url(), &table).counts().await.unwrap().synced, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_costs_two_requests_per_job() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port, 0).await;
    let s = store(&proxy.url(), &fresh_table("count"));
    s.open().await.unwrap();
    proxy.counters.reset();
    for j in 0..10 {
        let arn = format!("arn:j/{j}");
        let Acquired::Granted { lease, state } = s.acquire(&arn, "w", Duration::from_secs(30)).await.unwrap() else { panic!() };
        assert!(state.is_none());
        assert!(s.commit(&lease, &conformance::entry(&arn, Outcome::Synced)).await.unwrap());
    }
    assert_eq!(proxy.counters.snapshot().get("UpdateItem"), Some(&20));
    assert_eq!(proxy.counters.total(), 20, "acquire (with the entry) and commit (with the release): {:?}", proxy.counters.snapshot());
}

/// Issue 19, item 7, at DynamoDB's limit: an item over 400 KB is refused (moto refuses as
/// DynamoDB does), and the store says so as a non-retryable error, so that the engine records
/// the refusal instead of retrying the same write; the lease stays the writer's until released.
/// The engine's bound on an entry keeps every entry it writes far below the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_over_dynamodbs_item_limit_is_refused_non_retryably() {
    let moto = Moto::start();
    let s = store(&moto.url(), &fresh_table("limit"));
    let arn = "arn:aws:sagemaker:us-east-1:1:training-job/wide";
    let Acquired::Granted { lease, .. } = s.acquire(arn, "me", Duration::from_secs(30)).await.unwrap() else { panic!("granted") };
    let receipt = |n: usize| {
        let mut rc = sagesync_core::SinkReceipt::new(sagesync_core::WriteKind::Created);
        rc.ids.insert("notes".into(), "x".repeat(n));
        rc
    };
    let entry = |n: usize| sagesync_core::JobState {
        arn: arn.into(),
        job: "wide".into(),
        basis: Default::default(),
        outcome: Outcome::Synced,
        reason: None,
        record_digest: Some("r".into()),
        deliveries: [("mlflow".to_string(), sagesync_core::Delivery::written("r".into(), "s".into(), receipt(n), chrono::Utc::now()))]
            .into_iter()
            .collect(),
        attempts: 0,
        permanent_failures: 0,
        parked: false,
        next_attempt_at: None,
        pass: None,
        updated_at: chrono::Utc::now(),
    };
    let e = s.commit(&lease, &entry(410 * 1024)).await.expect_err("over 400 KB");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("size"), "{e}");
    // The same entry as the engine bounds it: written.
    assert!(s.commit(&lease, &entry(410 * 1024).bounded()).await.unwrap());
    let back = s.jobs(&[arn.to_string()]).await.unwrap().remove(0).unwrap();
    assert!(serde_json::to_vec(&back).unwrap().len() < 8 * 1024);
}

/// Issue 20 audit: an item written by the previous release (delivery state told by markers, a
/// pending write's names as receipt ids) is read typed, and `sagesync retry` unparks it: the
/// conditional write compares the entry's stored text, not a re-encoding of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_the_previous_release_reads_typed_and_unparks() {
    let moto = Moto::start();
    let table = fresh_table("legacy");
    let s = store(&moto.url(), &table);
    let arn = "arn:aws:sagemaker:us-east-1:1:training-job/old";
    let Acquired::Granted { lease, .. } = s.acquire(arn, "me", Duration::from_secs(30)).await.unwrap() else { panic!("granted") };
    let e = sagesync_core::JobState {
        arn: arn.into(),
        job: "old".into(),
        basis: Default::default(),
        outcome: Outcome::Failed,
        reason: Some("bad".into()),
        record_digest: None,
        deliveries: Default::default(),
        attempts: 3,
        permanent_failures: 3,
        parked: true,
        next_attempt_at: None,
        pass: None,
        updated_at: chrono::Utc::now(),
    };
    assert!(s.commit(&lease, &e).await.unwrap());
    s.release(&lease).await.unwrap();
    // The entry as the previous release wrote it.
    let mut old = serde_json::to_value(&e).unwrap();
    old["deliveries"] = serde_json::json!({"v1": {"record_digest": "pending", "sink_digest": "", "at": e.updated_at,
        "receipt": {"sink": "v1", "write": "created", "writes": 0,
                    "ids": {"pending_project": "p", "pending_experiment": "e", "pending_run": "r"}}}});
    let raw = raw_client(&moto.url()).await;
    raw.update_item()
        .table_name(&table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("job#{arn}")))
        .update_expression("SET #e = :e")
        .expression_attribute_names("#e", "entry")
        .expression_attribute_values(":e", aws_sdk_dynamodb::types::AttributeValue::S(old.to_string()))
        .send()
        .await
        .unwrap();
    let back = s.jobs(&[arn.to_string()]).await.unwrap().remove(0).unwrap();
    assert_eq!(back.deliveries["v1"].pending_names().map(|n| n.run.as_str()), Some("r"));
    assert_eq!(s.unpark(&[]).await.unwrap(), vec![arn.to_string()], "unparked");
    let back = s.jobs(&[arn.to_string()]).await.unwrap().remove(0).unwrap();
    assert!(!back.parked && back.attempts == 0);
    assert_eq!(back.deliveries["v1"].pending_names().map(|n| n.project.as_str()), Some("p"), "the intent survives");
}
