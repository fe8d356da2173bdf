"""Checks the answers moto_launcher.py adds for SageMaker against botocore's service model.

Usage: python check_launcher.py URL   -> prints "OK <n> answers checked", or each problem and
exits 1.

It makes a tuning job and training jobs (two failed, three completed) through boto3, links
the jobs to the tuner the launcher's way (POST /_sm/training-job {"set": {"TuningJobArn"}}),
then calls DescribeTrainingJob, DescribeHyperParameterTuningJob,
ListHyperParameterTuningJobs and ListTrainingJobsForHyperParameterTuningJob (every SortBy,
paged) and checks each raw answer against the operation's output shape: no member the model
does not name, every required member present, each value of its shape's type, enum values
from the enum, list and map members alike. It also checks what the answers mean: children
linked, counters and the best job computed from them, paging that loses nothing.

For pipelines, it starts executions of a tagged pipeline, sets one's steps the launcher's way
(POST /_sm/pipeline-execution), and checks ListPipelineExecutions (time filters, both orders,
paged), DescribePipelineExecution, ListPipelineExecutionSteps (paged) and ListTags on the
pipeline against the model.
"""
import datetime as dt
import json
import sys
import urllib.request

import boto3
import botocore.session

PROBLEMS = []
CHECKED = [0]


def problem(msg):
    PROBLEMS.append(msg)


def check(shape, value, path):
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            return problem("%s: a %s, not a structure" % (path, type(value).__name__))
        for k, v in value.items():
            if k not in shape.members:
                problem("%s.%s: not a member of %s" % (path, k, shape.name))
            else:
                check(shape.members[k], v, "%s.%s" % (path, k))
        for r in shape.required_members:
            if r not in value:
                problem("%s: required member %s missing" % (path, r))
    elif t == "list":
        if not isinstance(value, list):
            return problem("%s: not a list" % path)
        for i, v in enumerate(value):
            check(shape.member, v, "%s[%d]" % (path, i))
    elif t == "map":
        if not isinstance(value, dict):
            return problem("%s: not a map" % path)
        for k, v in value.items():
            check(shape.key, k, "%s{key}" % path)
            check(shape.value, v, "%s[%s]" % (path, k))
    elif t == "string":
        if not isinstance(value, str):
            return problem("%s: %r is not a string" % (path, value))
        enum = shape.enum
        if enum and value not in enum:
            problem("%s: %r is not one of %s" % (path, value, enum))
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problem("%s: %r is not an integer" % (path, value))
    elif t in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problem("%s: %r is not a number" % (path, value))
    elif t == "boolean":
        if not isinstance(value, bool):
            problem("%s: %r is not a boolean" % (path, value))
    elif t == "timestamp":
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            problem("%s: %r is not a timestamp" % (path, value))


def main():
    url = sys.argv[1]
    model = botocore.session.get_session().get_service_model("sagemaker")
    sm = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    raw = {}

    def keep(http_response, operation_name, **_):
        raw[operation_name] = json.loads(http_response.content or b"{}")

    sm.meta.events.register("after-call.sagemaker", lambda http_response, model, **kw: keep(http_response, model.name))

    def call(op, **params):
        getattr(sm, op)(**params)
        answer = raw[model.operation_model(op_name(op)).name]
        check(model.operation_model(op_name(op)).output_shape, answer, op_name(op))
        CHECKED[0] += 1
        return answer

    def post(path, body):
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    tuner = "tuner-check"
    ranges = {"IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "3", "MaxValue": "9"}],
              "ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0.1", "MaxValue": "0.5"}]}
    definition = {
        "StaticHyperParameters": {"objective": "binary:logistic"},
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/r",
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuner,
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 10, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": ranges,
        },
        TrainingJobDefinition=definition,
        Tags=[{"Key": "project", "Value": "p"}],
    )
    tuner_arn = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuner)["HyperParameterTuningJobArn"]
    values = {"c1": 0.81, "c2": 0.93, "c3": 0.77}
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for i, name in enumerate(["c1", "c2", "c3", "f1", "f2"]):
        sm.create_training_job(
            TrainingJobName=name,
            HyperParameters={"objective": "binary:logistic", "max_depth": str(3 + i), "eta": "0.2"},
            AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
            RoleArn="arn:aws:iam::123456789012:role/r",
            OutputDataConfig={"S3OutputPath": "s3://b/out"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
        )
        when = (t0 + dt.timedelta(minutes=i)).isoformat()
        s = {"TuningJobArn": tuner_arn, "CreationTime": when, "LastModifiedTime": when}
        if name.startswith("f"):
            s.update({"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: boom", "FinalMetricDataList": []})
        else:
            s["FinalMetricDataList"] = [{"MetricName": "validation:auc", "Value": values[name], "Timestamp": when}]
        post("/_sm/training-job", {"name": name, "set": s})

    d = call("describe_training_job", TrainingJobName="c1")
    if d.get("TuningJobArn") != tuner_arn:
        problem("DescribeTrainingJob: TuningJobArn %r" % d.get("TuningJobArn"))
    d = call("describe_hyper_parameter_tuning_job", HyperParameterTuningJobName=tuner)
    if d["TrainingJobStatusCounters"] != {"Completed": 3, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 2, "Stopped": 0}:
        problem("counters %r" % d["TrainingJobStatusCounters"])
    if d["ObjectiveStatusCounters"] != {"Succeeded": 3, "Pending": 0, "Failed": 2}:
        problem("objective counters %r" % d["ObjectiveStatusCounters"])
    best = d.get("BestTrainingJob") or {}
    if best.get("TrainingJobName") != "c2" or best.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value") != 0.93:
        problem("best %r" % best)
    lst = call("list_hyper_parameter_tuning_jobs", MaxResults=10)
    if [s["HyperParameterTuningJobName"] for s in lst["HyperParameterTuningJobSummaries"]] != [tuner]:
        problem("ListHyperParameterTuningJobs %r" % lst)
    for sort_by, want in (("Name", 5), ("CreationTime", 5), ("Status", 5), ("FinalObjectiveMetricValue", 3)):
        names, token = [], None
        while True:
            params = {"HyperParameterTuningJobName": tuner, "MaxResults": 2, "SortBy": sort_by, "SortOrder": "Ascending"}
            if token:
                params["NextToken"] = token
            page = call("list_training_jobs_for_hyper_parameter_tuning_job", **params)
            names += [s["TrainingJobName"] for s in page["TrainingJobSummaries"]]
            token = page.get("NextToken")
            if not token:
                break
        if len(names) != want or len(set(names)) != want:
            problem("children by %s: %r" % (sort_by, names))
        if sort_by == "FinalObjectiveMetricValue" and names != ["c3", "c1", "c2"]:
            problem("by objective value: %r" % names)
    tuned = page["TrainingJobSummaries"][0]["TunedHyperParameters"]
    if set(tuned) != {"max_depth", "eta"}:
        problem("TunedHyperParameters %r" % tuned)
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="untagged",
        HyperParameterTuningJobConfig={
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "validation:rmse"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
            "ParameterRanges": ranges,
        },
        TrainingJobDefinition=definition,
    )
    untagged = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="untagged")
    if "BestTrainingJob" in untagged or untagged["TrainingJobStatusCounters"]["Completed"] != 0:
        problem("a tuner without children: %r" % untagged)
    if call("list_tags", ResourceArn=untagged["HyperParameterTuningJobArn"]).get("Tags") != []:
        problem("ListTags on a tuner without tags")
    default = call("list_training_jobs_for_hyper_parameter_tuning_job", HyperParameterTuningJobName=tuner)
    if [s["TrainingJobName"] for s in default["TrainingJobSummaries"]] != ["c1", "c2", "c3", "f1", "f2"]:
        problem("the default order is by name, ascending: %r" % default)
    try:
        sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="nope")
        problem("an unknown tuner was answered")
    except sm.exceptions.ResourceNotFound:
        pass
    # --- Pipelines ---
    sm.create_pipeline(PipelineName="pipe-check", PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
                       RoleArn="arn:aws:iam::123456789012:role/r", Tags=[{"Key": "project", "Value": "p"}])
    execs = [sm.start_pipeline_execution(PipelineName="pipe-check", PipelineExecutionDisplayName="run-%d" % i)["PipelineExecutionArn"] for i in range(3)]
    steps = [
        {"StepName": "Prep", "StepStatus": "Succeeded", "StartTime": "2026-01-01T00:00:00Z", "EndTime": "2026-01-01T00:05:00Z",
         "Metadata": {"ProcessingJob": {"Arn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/prep"}}},
        {"StepName": "Train", "StepStatus": "Failed", "StartTime": "2026-01-01T00:06:00Z", "FailureReason": "boom",
         "Metadata": {"TrainingJob": {"Arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/c1"}}},
        {"StepName": "Check", "StepStatus": "Succeeded", "StartTime": "2026-01-01T00:07:00Z", "Metadata": {"Condition": {"Outcome": "True"}}},
    ]
    post("/_sm/pipeline-execution", {"arn": execs[0], "set": {"PipelineExecutionStatus": "Failed", "PipelineExecutionFailureReason": "Step Train failed", "Steps": steps}})
    d = call("describe_pipeline_execution", PipelineExecutionArn=execs[0])
    if (d.get("PipelineExecutionStatus"), d.get("FailureReason")) != ("Failed", "Step Train failed"):
        problem("DescribePipelineExecution: %r" % d)
    for order in ("Ascending", "Descending"):
        arns, token = [], None
        while True:
            params = {"PipelineName": "pipe-check", "MaxResults": 2, "SortBy": "CreationTime", "SortOrder": order}
            if token:
                params["NextToken"] = token
            page = call("list_pipeline_executions", **params)
            arns += [e["PipelineExecutionArn"] for e in page["PipelineExecutionSummaries"]]
            token = page.get("NextToken")
            if not token:
                break
        if arns != (execs if order == "Ascending" else execs[::-1]):
            problem("ListPipelineExecutions %s: %r" % (order, arns))
    later = call("list_pipeline_executions", PipelineName="pipe-check", CreatedAfter=dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))
    if later["PipelineExecutionSummaries"]:
        problem("CreatedAfter did not filter: %r" % later)
    got, token = [], None
    while True:
        params = {"PipelineExecutionArn": execs[0], "MaxResults": 2}
        if token:
            params["NextToken"] = token
        page = call("list_pipeline_execution_steps", **params)
        got += [s["StepName"] for s in page["PipelineExecutionSteps"]]
        token = page.get("NextToken")
        if not token:
            break
    if sorted(got) != ["Check", "Prep", "Train"] or len(got) != 3:
        problem("ListPipelineExecutionSteps: %r" % got)
    if call("list_pipeline_execution_steps", PipelineExecutionArn=execs[1])["PipelineExecutionSteps"] != []:
        problem("an execution without steps")
    pipeline_arn = d["PipelineArn"]
    if call("list_tags", ResourceArn=pipeline_arn).get("Tags") != [{"Key": "project", "Value": "p"}]:
        problem("ListTags on a pipeline")
    try:
        sm.list_pipeline_execution_steps(PipelineExecutionArn=execs[0] + "x")
        problem("an unknown execution was answered")
    except sm.exceptions.ResourceNotFound:
        pass
    if PROBLEMS:
        print("\n".join(PROBLEMS))
        sys.exit(1)
    print("OK %d answers checked" % CHECKED[0])


def op_name(snake):
    return "".join(p.capitalize() for p in snake.split("_"))


if __name__ == "__main__":
    main()
