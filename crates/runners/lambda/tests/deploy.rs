//! The deployable template passes cfn-lint; the optional state machine is consistent.

use sagesync_test_support::locate::{python, repo_root};
use serde_json::Value;

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
