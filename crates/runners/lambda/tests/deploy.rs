//! The deployable template passes cfn-lint; the optional state machine is consistent.

#[path = "../../../sink-modeldb/tests/support/peer.rs"]
mod peer;

use serde_json::Value;

#[test]
fn sam_template_passes_cfn_lint() {
    let root = peer::repo_root();
    let lint = peer::python().parent().unwrap().join("cfn-lint");
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
            "- dynamodb:DescribeTable",
            "- dynamodb:GetItem",
            "- dynamodb:BatchGetItem",
            "- dynamodb:UpdateItem",
            "- logs:CreateLogStream",
            "- logs:PutLogEvents",
            "Action: sqs:SendMessage"
        ]
    );
    assert!(text.contains(":training-job/*"));
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

#[test]
fn state_machine_definition_is_consistent() {
    let asl: Value =
        serde_json::from_slice(&std::fs::read(peer::repo_root().join("deploy/lambda/statemachine.asl.json")).unwrap()).unwrap();
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
