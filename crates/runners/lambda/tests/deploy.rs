//! The deployable template passes cfn-lint; the optional state machine is consistent.

use sagesync_test_support::locate::{python, repo_root};
use serde_json::{json, Value};

#[test]
fn sam_template_passes_cfn_lint() {
    let root = repo_root();
    let lint = python().parent().unwrap().join("cfn-lint");
    assert!(lint.exists(), "cfn-lint not installed: run scripts/setup-peers.sh");
    let out = std::process::Command::new(&lint).arg(root.join("deploy/lambda/template.yaml")).output().unwrap();
    assert!(out.status.success(), "cfn-lint failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(root.join("deploy/lambda/template.yaml")).unwrap();
    // Least privilege: exactly these actions, and the SageMaker ones only on training jobs.
    let actions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("- sagemaker:") || l.starts_with("- dynamodb:") || l.starts_with("- logs:") || l.starts_with("Action: sqs:")
        })
        .collect();
    assert_eq!(
        actions,
        [
            "- sagemaker:DescribeTrainingJob",
            "- sagemaker:ListTags",
            "- sagemaker:DescribeHyperParameterTuningJob",
            "- sagemaker:ListTrainingJobsForHyperParameterTuningJob",
            "- sagemaker:ListTags",
            "- sagemaker:DescribePipelineExecution",
            "- sagemaker:ListPipelineExecutionSteps",
            "- sagemaker:ListTags",
            "- sagemaker:DescribeProcessingJob",
            "- sagemaker:DescribeModelPackage",
            "- sagemaker:DescribeModelPackageGroup",
            "- sagemaker:ListTags",
            "- sagemaker:Search",
            "- sagemaker:BatchGetMetrics",
            "- dynamodb:DescribeTable",
            "- dynamodb:GetItem",
            "- dynamodb:BatchGetItem",
            "- dynamodb:UpdateItem",
            "- dynamodb:Query",
            "- logs:CreateLogStream",
            "- logs:PutLogEvents",
            "Action: sqs:SendMessage"
        ]
    );
    assert!(text.contains(":training-job/*"));
    // Issue 21: the tuning and pipeline events reach the function, each kind read only on its
    // own resources.
    for needle in [
        "detail-type: [SageMaker HyperParameter Tuning Job State Change]",
        "detail-type: [SageMaker Model Building Pipeline Execution Status Change]",
        "currentPipelineExecutionStatus: [Succeeded, Failed, Stopped]",
        ":hyper-parameter-tuning-job/*",
        ":pipeline/*/execution/*",
        ":processing-job/*",
        // Issue 22: model packages.
        "detail-type: [SageMaker Model Package State Change]",
        "ModelPackageStatus: [Completed, Deleting]",
        ":model-package/*",
        ":model-package-group/*",
    ] {
        assert!(text.contains(needle), "template lacks {needle}");
    }
    // The scheduled re-drive: a Schedule event on the function, its rate a parameter, and the
    // failed-jobs index (only) queried.
    for needle in [
        "Type: Schedule",
        "Schedule: !Ref RetrySchedule",
        "Default: rate(15 minutes)",
        "Resource: !Sub ${StateTable.Arn}/index/failed-by-arn",
    ] {
        assert!(text.contains(needle), "template lacks {needle}");
    }
    // The ledger: only on the template's own table, on-demand, TTL on the lease attribute, PITR.
    assert!(text.contains("Resource: !GetAtt StateTable.Arn") && !text.contains("dynamodb:*"));
    for needle in [
        "Type: AWS::DynamoDB::Table",
        "BillingMode: PAY_PER_REQUEST",
        &format!("AttributeName: {}", sagesync_state_dynamodb::TTL_ATTRIBUTE),
        "PointInTimeRecoveryEnabled: true",
        "SAGESYNC_STATE_TABLE: !Ref StateTable",
    ] {
        assert!(text.contains(needle), "template lacks {needle}");
    }
    assert!(!text.contains("Action: \"*\"") && !text.contains("sagemaker:*"));
    // The statements on every resource: Search's (it has no resource-level permissions), and,
    // only with MetricHistories = "true" (issue 24), the metric histories' two actions.
    assert_eq!(text.matches("Resource: \"*\"").count(), 2);
    assert!(text.contains("- sagemaker:Search\n                Resource: \"*\""));
    assert!(text.contains(
        "- ReadMetricHistories\n                - Sid: ReadMetricHistories\n                  Effect: Allow\n                  Action:\n                    - sagemaker:BatchGetMetrics\n                    - cloudwatch:GetMetricData\n                  Resource: \"*\""
    ));
    assert!(text.contains("ReadMetricHistories: !Equals [!Ref MetricHistories, \"true\"]") && text.contains("Default: \"false\""));
    for needle in [
        "Runtime: provided.al2023",
        "Architectures: [arm64]",
        "TrainingJobStatus: [Completed, Failed, Stopped]",
        "OnFailure:",
        "SubnetIds: !Ref SubnetIds",
    ] {
        assert!(text.contains(needle), "template lacks {needle}");
    }
}

/// Issue 23: the central account's bus, its policy and rule, the member roles the function may
/// assume; and the member account's template (forwarding rule, reader role behind the external
/// id), both clean under cfn-lint.
#[test]
fn many_accounts_templates_pass_cfn_lint() {
    let root = repo_root();
    let lint = python().parent().unwrap().join("cfn-lint");
    let member = root.join("deploy/lambda/member-account.yaml");
    let out = std::process::Command::new(&lint).arg(&member).output().unwrap();
    assert!(out.status.success(), "cfn-lint failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let central = std::fs::read_to_string(root.join("deploy/lambda/template.yaml")).unwrap();
    for needle in [
        "Type: AWS::Events::EventBus",
        "aws:PrincipalOrgID: !Ref OrganizationId",
        "AWS: !Ref MemberAccountIds",
        "EventBusName: !Ref CentralBus",
        "Action: sts:AssumeRole\n                  Resource: !Ref MemberRoleArns",
        "- SageMaker Model Package State Change",
    ] {
        assert!(central.contains(needle), "template lacks {needle}");
    }
    let text = std::fs::read_to_string(&member).unwrap();
    for needle in ["sts:ExternalId: !Ref ExternalId", "NoEcho: true", "RoleArn: !GetAtt ForwardRole.Arn", "Resource: !Ref CentralBusArn"] {
        assert!(text.contains(needle), "member-account.yaml lacks {needle}");
    }
    assert!(!text.contains("- sagemaker:*") && !text.contains("Action: sagemaker:*") && !text.contains("Action: \"*\""), "least privilege");
}

#[test]
fn state_machine_definition_is_consistent() {
    let asl: Value = serde_json::from_slice(&std::fs::read(repo_root().join("deploy/lambda/statemachine.asl.json")).unwrap()).unwrap();
    let states = asl["States"].as_object().unwrap();
    assert!(states.contains_key(asl["StartAt"].as_str().unwrap()));
    let mut targets = Vec::new();
    for (_, s) in states {
        for k in ["Next", "Default"] {
            if let Some(t) = s.get(k).and_then(Value::as_str) {
                targets.push(t.to_string());
            }
        }
        for list in ["Choices", "Catch"] {
            for c in s.get(list).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(t) = c.get("Next").and_then(Value::as_str) {
                    targets.push(t.to_string());
                }
            }
        }
        let ty = s["Type"].as_str().unwrap();
        assert!(["Choice", "Task", "Succeed", "Fail"].contains(&ty));
        if ty == "Task" {
            assert!(s.get("Next").is_some() || s.get("End").is_some());
        }
    }
    for t in &targets {
        assert!(states.contains_key(t), "transition to unknown state {t}");
    }
    for (name, _) in states {
        assert!(name == asl["StartAt"].as_str().unwrap() || targets.contains(name), "unreachable state {name}");
    }
}

/// Issue 19, item 3: every outcome the handler answers and every error type it raises has its
/// branch in the state machine, and the state machine names no error the handler never raises.
/// The lists come from the handler's own declarations (`Answer`, `HandlerError`), not a copy.
#[test]
fn every_answer_and_error_of_the_handler_has_its_branch() {
    use sagesync_lambda::{Answer, HandlerError};
    let asl: Value = serde_json::from_slice(&std::fs::read(repo_root().join("deploy/lambda/statemachine.asl.json")).unwrap()).unwrap();
    let states = asl["States"].as_object().unwrap();
    let sync = states.values().find(|s| s["Type"] == "Task").expect("the Sync task");
    let outcome = &states[sync["Next"].as_str().unwrap()];
    let choices: Vec<&str> = outcome["Choices"].as_array().unwrap().iter().filter_map(|c| c["StringEquals"].as_str()).collect();
    let answers: Vec<&str> = Answer::ALL.iter().map(|a| a.as_str()).collect();
    for a in &answers {
        assert!(choices.contains(a), "the outcome `{a}` has no branch (it would fall to the default)");
    }
    for c in &choices {
        assert!(answers.contains(c), "the branch `{c}` matches no outcome the handler answers");
    }
    let mut named: Vec<&str> = Vec::new();
    for list in ["Retry", "Catch"] {
        for r in sync[list].as_array().unwrap() {
            named.extend(r["ErrorEquals"].as_array().unwrap().iter().filter_map(Value::as_str));
        }
    }
    for t in HandlerError::TYPES {
        assert!(named.contains(t), "the error `{t}` has no Retry or Catch of its own");
    }
    for n in &named {
        assert!(
            HandlerError::TYPES.contains(n) || n.starts_with("Lambda.") || n.starts_with("States."),
            "the state machine names `{n}`, an error the handler never raises"
        );
    }
    let retried: Vec<&str> = sync["Retry"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ErrorEquals"].as_array().unwrap().iter().filter_map(Value::as_str))
        .collect();
    assert!(retried.contains(&"RetryableError"), "a retryable failure is retried");
    assert!(!retried.contains(&"PermanentFailure") && !retried.contains(&"MalformedEvent"), "{retried:?}");
}

/// The template rendered the way CloudFormation renders it for `params` (conditions resolved),
/// by tests/peers/render_template.py with cfn-lint's decoder.
fn rendered(params: &[(&str, &str)]) -> Value {
    let root = repo_root();
    let mut c = std::process::Command::new(python());
    c.arg(root.join("tests/peers/render_template.py")).arg(root.join("deploy/lambda/template.yaml"));
    for (k, v) in params {
        c.arg(format!("{k}={v}"));
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The role's statements, by Sid: actions and resources.
fn statements(t: &Value) -> std::collections::BTreeMap<String, (Vec<String>, Value)> {
    let list = t["Resources"]["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].as_array().unwrap().clone();
    list.into_iter()
        .map(|s| {
            let actions = match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
                other => panic!("{other}"),
            };
            (s["Sid"].as_str().unwrap().to_string(), (actions, s["Resource"].clone()))
        })
        .collect()
}

/// The MLflow REST operations the mlflow sink calls (read from its source), as the
/// `sagemaker-mlflow` IAM actions that allow them.
fn mlflow_actions_used() -> std::collections::BTreeSet<String> {
    const ACTIONS: [(&str, &str); 22] = [
        ("experiments/create", "CreateExperiment"),
        ("experiments/get-by-name", "GetExperimentByName"),
        ("experiments/search", "SearchExperiments"),
        ("runs/create", "CreateRun"),
        ("runs/get", "GetRun"),
        ("runs/search", "SearchRuns"),
        ("runs/update", "UpdateRun"),
        ("runs/delete", "DeleteRun"),
        ("runs/log-batch", "LogBatch"),
        ("runs/log-inputs", "LogInputs"),
        ("runs/set-tag", "SetTag"),
        ("metrics/get-history", "GetMetricHistory"),
        ("registered-models/create", "CreateRegisteredModel"),
        ("registered-models/get", "GetRegisteredModel"),
        ("POST registered-models/alias", "SetRegisteredModelAlias"),
        ("DELETE registered-models/alias", "DeleteRegisteredModelAlias"),
        ("model-versions/create", "CreateModelVersion"),
        ("model-versions/get", "GetModelVersion"),
        ("model-versions/search", "SearchModelVersions"),
        ("model-versions/update", "UpdateModelVersion"),
        ("model-versions/delete", "DeleteModelVersion"),
        ("model-versions/set-tag", "SetModelVersionTag"),
    ];
    let mut used = std::collections::BTreeSet::new();
    for f in std::fs::read_dir(repo_root().join("crates/sink-mlflow/src")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for (i, _) in text.match_indices('"') {
            let rest = &text[i + 1..];
            let Some(end) = rest.find('"') else { continue };
            let op = &rest[..end];
            if !["experiments/", "runs/", "metrics/", "registered-models/", "model-versions/"].iter().any(|p| op.starts_with(p))
                || !op.chars().all(|c| c.is_ascii_lowercase() || c == '/' || c == '-')
            {
                continue;
            }
            let before = &text[i.saturating_sub(12)..i];
            let key = if op == "registered-models/alias" {
                if before.contains("delete(") {
                    "DELETE registered-models/alias".to_string()
                } else {
                    "POST registered-models/alias".to_string()
                }
            } else {
                op.to_string()
            };
            let action = ACTIONS
                .iter()
                .find(|(o, _)| *o == key)
                .map(|(_, a)| a)
                .unwrap_or_else(|| panic!("the mlflow sink calls `{key}`: add its sagemaker-mlflow action here and to the template"));
            used.insert(format!("sagemaker-mlflow:{action}"));
        }
    }
    used
}

/// Issue 25: the template with each `Store`: the role holds exactly the statements that store
/// needs (the SageMaker ones, the ledger's, the logs', the failure queue's, plus: the
/// sagemaker-mlflow actions the sink uses on exactly the tracking server's ARN; GetSecretValue on
/// exactly the token's or the developer key's secret; GetParameter on the config parameter and
/// the secrets and parameters a config names), and the function gets what selects its pipeline,
/// secrets named by ARN, never their values.
#[test]
fn each_store_gets_exactly_the_statements_it_needs() {
    let base: Vec<&str> = vec![
        "ReadTrainingJobs",
        "ReadTuningJobs",
        "ReadPipelineExecutions",
        "ReadProcessingJobs",
        "ReadModelPackages",
        "FindTrainingJobByArtifact",
        "SharedLedger",
        "FailedJobsIndex",
        "WriteOwnLogs",
        "SendFailures",
    ];
    let sids = |t: &Value| statements(t).keys().cloned().collect::<std::collections::BTreeSet<String>>();
    let with = |extra: &[&str]| base.iter().chain(extra).map(|s| s.to_string()).collect::<std::collections::BTreeSet<String>>();
    let env = |t: &Value, k: &str| t["Resources"]["SyncFunction"]["Properties"]["Environment"]["Variables"][k].clone();

    let v1 = rendered(&[]);
    assert_eq!(sids(&v1), with(&[]), "ModelDB v1 (the default) needs nothing more");
    assert_eq!(env(&v1, "SAGESYNC_STORE"), "modeldb_v1");

    let server = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/prod";
    let ml = rendered(&[("Store", "mlflow"), ("MlflowTrackingServerArn", server)]);
    assert_eq!(sids(&ml), with(&["WriteMlflowTrackingServer"]));
    let (actions, resource) = &statements(&ml)["WriteMlflowTrackingServer"];
    assert_eq!(
        actions.iter().cloned().collect::<std::collections::BTreeSet<_>>(),
        mlflow_actions_used(),
        "exactly the actions the sink uses"
    );
    assert_eq!(resource, &Value::String(server.into()), "on exactly that server");
    assert_eq!((env(&ml, "SAGESYNC_STORE"), env(&ml, "SAGESYNC_MLFLOW_TRACKING_URI")), (Value::from("mlflow"), Value::from(server)));

    let token = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-token-AbCdEf";
    let own = rendered(&[("Store", "mlflow"), ("MlflowTrackingUri", "https://mlflow.example.com"), ("MlflowTokenSecretArn", token)]);
    assert_eq!(sids(&own), with(&["ReadMlflowToken"]));
    assert_eq!(statements(&own)["ReadMlflowToken"], (vec!["secretsmanager:GetSecretValue".to_string()], Value::from(token)));
    assert_eq!(
        (env(&own, "SAGESYNC_MLFLOW_TRACKING_URI"), env(&own, "SAGESYNC_MLFLOW_TOKEN_SECRET")),
        (Value::from("https://mlflow.example.com"), Value::from(token))
    );

    // A token beside a managed server's ARN is not read (the role signs): no statement for it.
    let both = rendered(&[("Store", "mlflow"), ("MlflowTrackingServerArn", server), ("MlflowTokenSecretArn", token)]);
    assert_eq!(sids(&both), with(&["WriteMlflowTrackingServer"]));
    assert_eq!(env(&both, "SAGESYNC_MLFLOW_TOKEN_SECRET"), "");

    let key = "arn:aws:secretsmanager:us-east-1:123456789012:secret:modeldb-key-AbCdEf";
    let v2 = rendered(&[
        ("Store", "modeldb_v2"),
        ("ModelDBv2Url", "https://modeldb.example.com"),
        ("ModelDBv2Email", "ops@example.com"),
        ("ModelDBv2KeySecretArn", key),
    ]);
    assert_eq!(sids(&v2), with(&["ReadModelDBv2Key"]));
    assert_eq!(statements(&v2)["ReadModelDBv2Key"], (vec!["secretsmanager:GetSecretValue".to_string()], Value::from(key)));
    assert_eq!(env(&v2, "SAGESYNC_MODELDB_V2_KEY_SECRET"), Value::from(key));

    let (s1, p1) =
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf", "arn:aws:ssm:us-east-1:123456789012:parameter/sagesync/b");
    let cp = rendered(&[
        ("Store", "mlflow"),
        ("MlflowTrackingServerArn", server),
        ("ConfigParameter", "/sagesync/config"),
        ("SecretArns", s1),
        ("ParameterArns", p1),
    ]);
    assert_eq!(
        sids(&cp),
        with(&["ReadConfigParameter", "ReadConfigSecrets", "ReadConfigParameters"]),
        "the parameter's config decides the store"
    );
    assert_eq!(statements(&cp)["ReadConfigParameter"].0, ["ssm:GetParameter"]);
    assert_eq!(
        statements(&cp)["ReadConfigParameter"].1["Fn::Sub"],
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/sagesync/config"
    );
    assert_eq!(statements(&cp)["ReadConfigSecrets"], (vec!["secretsmanager:GetSecretValue".to_string()], json!([s1])));
    assert_eq!(statements(&cp)["ReadConfigParameters"], (vec!["ssm:GetParameter".to_string()], json!([p1])));
    assert_eq!(env(&cp, "SAGESYNC_CONFIG_PARAMETER"), "/sagesync/config");
    // No secret's value is ever a parameter of the template (only ARNs), and the role never
    // reads a secret on "*".
    for t in [&v1, &ml, &own, &v2, &cp] {
        for (sid, (actions, resource)) in statements(t) {
            if actions.iter().any(|a| a.starts_with("secretsmanager:") || a.starts_with("ssm:") || a.starts_with("sagemaker-mlflow:")) {
                assert_ne!(resource, Value::from("*"), "{sid}");
            }
        }
    }
}

/// Issue 25: every alarm, and every series of the dashboard, is a metric something really
/// emits: the function's Embedded Metric Format line (namespace `sagesync`, dimension
/// `FunctionName`, one of [`sagesync_lambda::EMF_METRICS`]), Lambda's own (`Errors`,
/// `Throttles`, `Invocations`, `Duration` of this function) or SQS's of the failure queue; and
/// an SNS topic, when given, is every alarm's action.
#[test]
fn every_alarm_and_dashboard_series_is_a_metric_that_is_emitted() {
    let ok = |ns: &str, metric: &str, dims: &[(String, Value)]| -> bool {
        let dim = |k: &str| dims.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match ns {
            "sagesync" => sagesync_lambda::EMF_METRICS.contains(&metric) && dims.len() == 1 && dim("FunctionName").is_some(),
            "AWS/Lambda" => ["Errors", "Throttles", "Invocations", "Duration"].contains(&metric) && dim("FunctionName").is_some(),
            "AWS/SQS" => metric == "ApproximateNumberOfMessagesVisible" && dim("QueueName").is_some(),
            _ => false,
        }
    };
    let topic = "arn:aws:sns:us-east-1:123456789012:ops";
    for t in [rendered(&[]), rendered(&[("AlarmTopicArn", topic)])] {
        let resources = t["Resources"].as_object().unwrap();
        let alarms: Vec<(&String, &Value)> = resources.iter().filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm").collect();
        let names: Vec<&str> = alarms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["FunctionErrorsAlarm", "FunctionThrottlesAlarm", "DeadLetterAlarm", "FailedJobsAlarm", "RedriveStaleAlarm"]);
        for (name, a) in &alarms {
            let p = &a["Properties"];
            let dims: Vec<(String, Value)> =
                p["Dimensions"].as_array().unwrap().iter().map(|d| (d["Name"].as_str().unwrap().to_string(), d["Value"].clone())).collect();
            assert!(ok(p["Namespace"].as_str().unwrap(), p["MetricName"].as_str().unwrap(), &dims), "{name}: {p}");
            // The function's dimension is the function itself; the queue's, the failure queue.
            for (k, v) in &dims {
                match k.as_str() {
                    "FunctionName" => assert_eq!(v, &json!({"Ref": "SyncFunction"}), "{name}"),
                    "QueueName" => assert_eq!(v, &json!({"Fn::GetAtt": ["FailureQueue", "QueueName"]}), "{name}"),
                    _ => panic!("{name}: {k}"),
                }
            }
            assert!(p["AlarmDescription"].as_str().unwrap().contains("docs/operations.md#"), "{name}: a runbook line");
            let has_topic = p["AlarmActions"] == json!([topic]);
            assert_eq!(has_topic, t["Parameters"]["AlarmTopicArn"] == topic, "{name}");
        }
        // The dashboard: its body, with the stack's names put in, holds only emitted series.
        let body = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"].as_str().unwrap();
        let body = body.replace("${AWS::Region}", "us-east-1").replace("${SyncFunction}", "fn").replace("${FailureQueue.QueueName}", "q");
        assert!(!body.contains("${"), "{body}");
        let d: Value = serde_json::from_str(&body).unwrap();
        let mut series = 0;
        for w in d["widgets"].as_array().unwrap() {
            for m in w["properties"]["metrics"].as_array().unwrap() {
                let m = m.as_array().unwrap();
                let dims = vec![(m[2].as_str().unwrap().to_string(), m[3].clone())];
                assert!(ok(m[0].as_str().unwrap(), m[1].as_str().unwrap(), &dims), "{m:?}");
                series += 1;
            }
        }
        assert!(series >= 10);
    }
}
