"""Drives a ModelDB v1 server exactly like the AWS sample's SyncModelWithModelDB Lambda, using
the original Light API (`Syncer` from modeldb==0.0.1a30) on one DescribeTrainingJob document.

Usage: python light_api_driver.py HOST PORT JOB.json
JOB.json is DescribeTrainingJob output with "Tags" (Key/Value list or map). The tag keys are the
sample's defaults. Exits 3 with the Python error when the sample's code would crash on the job.
"""
import json
import sys

from modeldb.basic.ModelDbSyncerBase import Syncer
from modeldb.basic.Structs import Dataset, Model, ModelConfig, ModelMetrics


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(path) as f:
        details = json.load(f)
    tags = details.get("Tags", {})
    if isinstance(tags, list):
        tags = {t["Key"]: t.get("Value", "") for t in tags}
    try:
        project_name = tags["MODEL_DB_PROJECT_NAME"]
        project_user = tags["MODEL_DB_PROJECT_USER"]
        project_desc = tags["MODEL_DB_PROJECT_DESC"]
        model_name = tags["MODEL_DB_MODEL_NAME"]
        model_type = tags["MODEL_DB_MODEL_TYPE"]
        syncer_obj = Syncer.create_syncer(project_name, project_user, project_desc, host, port)
        datasets = {}
        for channel in details["InputDataConfig"]:
            datasets[channel["ChannelName"]] = Dataset(
                channel["DataSource"]["S3DataSource"]["S3Uri"],
                {"CompressionType": channel["CompressionType"], "RecordWrapperType": channel["RecordWrapperType"]})
        model = Model(model_type, model_name, details["ModelArtifacts"]["S3ModelArtifacts"])
        config = ModelConfig(model_type, {k: v for k, v in details["HyperParameters"].items()})
        metrics = ModelMetrics({m["MetricName"]: m["Value"] for m in details["FinalMetricDataList"]})
        syncer_obj.sync_datasets(datasets)
        syncer_obj.sync_model("train", config, model)
        syncer_obj.sync_metrics("test", model, metrics)
        syncer_obj.sync()
    except KeyError as e:
        sys.stderr.write("sample would crash: KeyError %s\n" % e)
        sys.exit(3)


if __name__ == "__main__":
    main()
