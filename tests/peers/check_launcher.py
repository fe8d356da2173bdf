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

For SageMaker Metrics (the launcher's own fake), it puts two metrics of a training job's trial
component (50 steps a minute apart, ten points a request, a step logged twice, points without
a step, NaN and the infinities), then checks BatchPutMetrics / BatchGetMetrics answers against
the model and for meaning: steps in order, values bit-exact with Last's semantics, time
buckets in epoch seconds, Start/End, the other statistics, per-query ValidationErrors beside
Complete results, forced Truncated / InternalError statuses (POST /_sm/metrics/status),
whole-request 400s, injected 503s retried (POST /_sm/metrics/fail, GET /_sm/metrics/calls), and
points kept apart by region and account (STS AssumeRole into another account).
"""
import datetime as dt
import json
import math
import struct
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
        if value in ("NaN", "Infinity", "-Infinity"):
            return  # Smithy's JSON spelling of the values JSON has no number for
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problem("%s: %r is not a number" % (path, value))
    elif t == "boolean":
        if not isinstance(value, bool):
            problem("%s: %r is not a boolean" % (path, value))
    elif t == "timestamp":
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            problem("%s: %r is not a timestamp" % (path, value))


# --- SageMaker Metrics ------------------------------------------------------------------------
def metric_values_equal(got, want):
    """Bit-exact, NaN equal to NaN."""
    return len(got) == len(want) and all(struct.pack("<d", g) == struct.pack("<d", w) or (math.isnan(g) and math.isnan(w)) for g, w in zip(got, want))


def check_metrics(url, sm):
    from botocore.config import Config
    from botocore.exceptions import ClientError

    model = botocore.session.get_session().get_service_model("sagemaker-metrics")
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

    def client(region="us-east-1", validate=True, **kw):
        c = boto3.client("sagemaker-metrics", endpoint_url=url, region_name=region,
                         config=Config(parameter_validation=validate, retries={"mode": "standard", "max_attempts": 3}), **{**creds, **kw})
        c.meta.events.register("after-call.sagemaker-metrics", keep)
        return c

    last = {}

    def keep(http_response, model, **_):
        last["op"] = model.name
        last["status"] = http_response.status_code
        last["headers"] = http_response.headers
        try:
            last["body"] = json.loads(http_response.content or b"{}")
        except ValueError:
            last["body"] = {"<not JSON>": http_response.content[:200].decode("utf-8", "replace")}

    def checked(op):
        """Checks the raw answer of the last call against `op`'s output shape."""
        if last.get("op") != op:
            return problem("%s: no answer captured" % op)
        check(model.operation_model(op).output_shape, last["body"], op)
        CHECKED[0] += 1
        return last["body"]

    def hook(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def expect_400(fn, what):
        try:
            fn()
            problem("%s was answered" % what)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if (code, e.response["ResponseMetadata"]["HTTPStatusCode"]) != ("ValidationException", 400):
                problem("%s: %s %s" % (what, e.response["ResponseMetadata"]["HTTPStatusCode"], code))
            if last["headers"].get("x-amzn-ErrorType") != "ValidationException":
                problem("%s: x-amzn-ErrorType %r" % (what, last["headers"].get("x-amzn-ErrorType")))

    mc = client()
    loose = client(validate=False)
    hook("DELETE", "/_sm/metrics/calls")
    hook("DELETE", "/_sm/metrics/status")
    sm.create_training_job(
        TrainingJobName="Metrics-Check",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/r",
        OutputDataConfig={"S3OutputPath": "s3://b/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    arn = sm.describe_training_job(TrainingJobName="Metrics-Check")["TrainingJobArn"]
    tc = "metrics-check-aws-training-job"
    t0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    e0 = int(t0.timestamp())
    # Two metrics, steps 0..49 a minute apart, ten points a request.
    want = {"train:loss": {s: 1.0 / (s + 3) for s in range(50)}, "validation:auc": {s: math.pi * s / 97 + 1e-9 for s in range(50)}}
    points = {m: [(e0 + 60 * s, s, v) for s, v in series.items()] for m, series in want.items()}
    for metric, series in want.items():
        for b in range(0, 50, 10):
            mc.batch_put_metrics(TrialComponentName=tc, MetricData=[
                {"MetricName": metric, "Timestamp": t0 + dt.timedelta(minutes=s), "Step": s, "Value": series[s]} for s in range(b, b + 10)])
            if checked("BatchPutMetrics") != {}:
                problem("BatchPutMetrics answered %r" % last["body"])
    # Step 7 logged again at the same time (the later put wins), step 8 again at an earlier time
    # (the latest timestamp wins), three points without a step (fractional seconds).
    extra = [(e0 + 420, 7, 0.123456789012345), (e0 + 450.5, 8, -2.5), (e0 + 3000.25, None, 9.75), (e0 + 3061.5, None, 8.5), (e0 + 3122.75, None, 7.25)]
    for ts, step, v in extra:
        d = {"MetricName": "train:loss", "Timestamp": dt.datetime.fromtimestamp(ts, dt.timezone.utc), "Value": v}
        if step is not None:
            d["Step"] = step
        mc.batch_put_metrics(TrialComponentName=tc, MetricData=[d])
        checked("BatchPutMetrics")
        points["train:loss"].append((ts, step, v))
    want["train:loss"][7] = 0.123456789012345
    # NaN and the infinities travel as Smithy's strings.
    specials = [float("nan"), float("inf"), float("-inf")]
    mc.batch_put_metrics(TrialComponentName=tc, MetricData=[
        {"MetricName": "odd", "Timestamp": t0, "Step": i, "Value": v} for i, v in enumerate(specials)])
    checked("BatchPutMetrics")

    def q(metric, stat="Last", period="IterationNumber", axis="IterationNumber", resource=arn, **kw):
        return dict({"MetricName": metric, "ResourceArn": resource, "MetricStat": stat, "Period": period, "XAxisType": axis}, **kw)

    queries = [
        q("train:loss"),                                                   # 0
        q("validation:auc"),                                               # 1
        q("train:loss", period="OneMinute", axis="Timestamp"),             # 2
        q("train:loss", stat="Count", period="OneHour", axis="Timestamp"), # 3
        q("validation:auc", stat="Max", period="FiveMinute", axis="Timestamp"),  # 4
        q("train:loss", period="IterationNumber", axis="Timestamp"),       # 5 invalid pairing
        q("no-such-metric"),                                               # 6 empty
        q("train:loss", resource=arn.replace(":training-job/", ":model/")),  # 7 a resource without metrics
        q("train:loss", resource=arn.replace(":us-east-1:", ":eu-west-1:")),  # 8 another region's
        q("validation:auc", Start=e0 + 600, End=e0 + 1200),                # 9 steps 10..19
        q("odd"),                                                          # 10
        q("train:loss", stat="Count"),                                     # 11
        q("train:loss", stat="Avg"), q("train:loss", stat="Min"), q("train:loss", stat="Max"), q("train:loss", stat="StdDev"),  # 12..15
    ]
    res = loose.batch_get_metrics(MetricQueries=queries)["MetricQueryResults"]
    raw = checked("BatchGetMetrics")["MetricQueryResults"]
    statuses = [r["Status"] for r in raw]
    bad = {5, 7, 8}
    if statuses != ["ValidationError" if i in bad else "Complete" for i in range(len(queries))]:
        problem("statuses %r" % statuses)
    for i in bad:
        if not raw[i].get("Message") or raw[i]["XAxisValues"] or raw[i]["MetricValues"]:
            problem("query %d: %r" % (i, raw[i]))
    steps = list(range(50))
    for i, metric in ((0, "train:loss"), (1, "validation:auc")):
        if raw[i]["XAxisValues"] != steps:
            problem("%s: steps %r" % (metric, raw[i]["XAxisValues"]))
        if not metric_values_equal(raw[i]["MetricValues"], [want[metric][s] for s in steps]):
            problem("%s: values %r" % (metric, raw[i]["MetricValues"]))
    # OneMinute buckets, by a plain reading of the points put.
    buckets = {}
    for n, (ts, _, v) in enumerate(points["train:loss"]):
        b = int(ts // 60 * 60)
        if b not in buckets or ts >= buckets[b][0]:
            buckets[b] = (ts, v)
    if raw[2]["XAxisValues"] != sorted(buckets) or not metric_values_equal(raw[2]["MetricValues"], [buckets[b][1] for b in sorted(buckets)]):
        problem("OneMinute buckets: %r" % raw[2])
    if raw[2]["XAxisValues"][:3] != [e0, e0 + 60, e0 + 120]:
        problem("XAxisValues are not epoch seconds: %r" % raw[2]["XAxisValues"][:3])
    if (raw[3]["XAxisValues"], raw[3]["MetricValues"]) != ([e0], [55.0]):
        problem("OneHour Count: %r" % raw[3])
    five = [e0 + 300 * k for k in range(10)]
    if raw[4]["XAxisValues"] != five or not metric_values_equal(raw[4]["MetricValues"], [want["validation:auc"][5 * k + 4] for k in range(10)]):
        problem("FiveMinute Max: %r" % raw[4])
    if raw[6] != {"Status": "Complete", "XAxisValues": [], "MetricValues": []}:
        problem("an empty metric: %r" % raw[6])
    if raw[9]["XAxisValues"] != list(range(10, 20)):
        problem("Start/End: %r" % raw[9]["XAxisValues"])
    if raw[10]["MetricValues"] != ["NaN", "Infinity", "-Infinity"] or not metric_values_equal(res[10]["MetricValues"], specials):
        problem("NaN / Infinity: raw %r, parsed %r" % (raw[10]["MetricValues"], res[10]["MetricValues"]))
    counts = [2.0 if s in (7, 8) else 1.0 for s in steps]
    if raw[11]["MetricValues"] != counts:
        problem("Count by step: %r" % raw[11]["MetricValues"])
    two7, two8 = [1.0 / 10, 0.123456789012345], [1.0 / 11, -2.5]
    if raw[12]["MetricValues"][7] != sum(two7) / 2 or raw[13]["MetricValues"][8] != -2.5 or raw[14]["MetricValues"][8] != 1.0 / 11:
        problem("Avg/Min/Max: %r %r %r" % (raw[12]["MetricValues"][7], raw[13]["MetricValues"][8], raw[14]["MetricValues"][8]))
    sd = math.sqrt(sum((v - sum(two8) / 2) ** 2 for v in two8) / 2)
    if abs(raw[15]["MetricValues"][8] - sd) > 1e-15 or raw[15]["MetricValues"][0] != 0.0:
        problem("StdDev: %r" % raw[15]["MetricValues"][:9])
    # Forced statuses: Truncated once (5 points), then InternalError once, then the whole answer.
    hook("POST", "/_sm/metrics/status", {"resource_arn": arn, "metric": "train:loss", "status": "Truncated", "keep": 5, "times": 1})
    mc.batch_get_metrics(MetricQueries=[q("train:loss"), q("validation:auc")])
    raw = checked("BatchGetMetrics")["MetricQueryResults"]
    if raw[0]["Status"] != "Truncated" or raw[0]["XAxisValues"] != list(range(5)) or not raw[0].get("Message") or raw[1]["Status"] != "Complete":
        problem("Truncated: %r" % raw)
    hook("POST", "/_sm/metrics/status", {"resource_arn": arn, "metric": "train:loss", "status": "InternalError", "times": 1})
    mc.batch_get_metrics(MetricQueries=[q("train:loss")])
    raw = checked("BatchGetMetrics")["MetricQueryResults"]
    if raw[0]["Status"] != "InternalError" or raw[0]["XAxisValues"] != [] or not raw[0].get("Message"):
        problem("InternalError: %r" % raw)
    mc.batch_get_metrics(MetricQueries=[q("train:loss")])
    if checked("BatchGetMetrics")["MetricQueryResults"][0]["XAxisValues"] != steps:
        problem("a forced status outlived its times")
    # Whole-request validation.
    expect_400(lambda: loose.batch_get_metrics(MetricQueries=[q("train:loss")] * 101), "101 queries")
    # What breaks the model's constraints fails the whole request, as AWS validates a request
    # against its model first; the other queries of the call get no answer.
    expect_400(lambda: loose.batch_get_metrics(MetricQueries=[q("train:loss"), q("train:loss", stat="Median")]), "a statistic outside the enum")
    expect_400(lambda: loose.batch_get_metrics(MetricQueries=[q("train:loss", resource="arn:aws:s3:::bucket/key")]), "not a SageMaker ARN")
    expect_400(lambda: loose.batch_get_metrics(MetricQueries=[]), "no queries")
    point = {"MetricName": "m", "Timestamp": t0, "Value": 1.0}
    expect_400(lambda: loose.batch_put_metrics(TrialComponentName="Not_Lower", MetricData=[point]), "a bad trial component name")
    expect_400(lambda: loose.batch_put_metrics(TrialComponentName=tc, MetricData=[point] * 11), "11 points")
    expect_400(lambda: loose.batch_put_metrics(TrialComponentName=tc, MetricData=[dict(point, Step=-1)]), "a negative step")
    expect_400(lambda: loose.batch_put_metrics(TrialComponentName=tc, MetricData=[{"MetricName": "m", "Value": 1.0}]), "a point without a time")
    # Injected HTTP failures, retried by the client.
    before = len(hook("GET", "/_sm/metrics/calls")["BatchGetMetrics"])
    hook("POST", "/_sm/metrics/fail", {"status": 503, "times": 2})
    mc.batch_get_metrics(MetricQueries=[q("train:loss"), q("validation:auc")])
    checked("BatchGetMetrics")
    calls = hook("GET", "/_sm/metrics/calls")
    if calls["BatchGetMetrics"][before:] != [2, 2, 2]:
        problem("retries after 503: %r" % calls)
    if calls["BatchGetMetrics"][:4] != [len(queries), 2, 1, 1] or calls["BatchPutMetrics"] != 10 + len(extra) + 1 + 4:
        problem("the call log: %r" % calls)
    hook("POST", "/_sm/metrics/fail", {"status": 500, "times": 5})
    try:
        mc.batch_get_metrics(MetricQueries=[q("train:loss")])
        problem("an injected 500 was answered")
    except ClientError as e:
        if (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]) != ("InternalFailure", 500):
            problem("an injected 500: %r" % e.response["Error"])
    hook("DELETE", "/_sm/metrics/fail")
    hook("DELETE", "/_sm/metrics/calls")
    if hook("GET", "/_sm/metrics/calls") != {"BatchGetMetrics": [], "BatchPutMetrics": 0}:
        problem("the call log was not reset")
    # Region and account: from the signature when putting, from the ARN when getting.
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1", **creds)
    c = sts.assume_role(RoleArn="arn:aws:iam::210987654321:role/metrics", RoleSessionName="check")["Credentials"]
    other = client("eu-west-1", aws_session_token=c["SessionToken"], **{"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"]})
    other.batch_put_metrics(TrialComponentName="far-aws-training-job", MetricData=[{"MetricName": "m", "Timestamp": t0, "Step": 0, "Value": 4.5}])
    checked("BatchPutMetrics")
    where = {"eu-west-1:210987654321": [4.5], "us-east-1:210987654321": [], "eu-west-1:123456789012": []}
    role = {"aws_session_token": c["SessionToken"], "aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"]}
    got = []
    for k in where:
        # Asked with the ARN's own account's credentials in its region (anything else is that
        # query's ValidationError).
        region, account = k.split(":")
        asker = client(region, **role) if account == "210987654321" else client(region)
        asker.batch_get_metrics(MetricQueries=[q("m", resource="arn:aws:sagemaker:%s:training-job/Far" % k)])
        got.append(checked("BatchGetMetrics")["MetricQueryResults"][0]["MetricValues"])
    if got != list(where.values()):
        problem("by region and account: %r" % got)
    mc.batch_get_metrics(MetricQueries=[q("m", resource="arn:aws:sagemaker:us-east-1:210987654321:training-job/Far")])
    other_account = checked("BatchGetMetrics")["MetricQueryResults"][0]
    if other_account["Status"] != "ValidationError":
        problem("another account's ARN with the default credentials: %r" % other_account)


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
    check_metrics(url, sm)
    if PROBLEMS:
        print("\n".join(PROBLEMS))
        sys.exit(1)
    print("OK %d answers checked" % CHECKED[0])


def op_name(snake):
    return "".join(p.capitalize() for p in snake.split("_"))


if __name__ == "__main__":
    main()
