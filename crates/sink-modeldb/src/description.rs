//! The run description both ModelDB sinks write: it names the job and carries its full ARN,
//! which is how a stored run is known as a job's (ModelDB v1 has no other place for it).

use sagesync_core::RunRecord;

/// `SageMaker training job <name> (<ARN>)` (`tuning job`, `pipeline execution`, `model
/// package` for those kinds). (ModelDB v1 writes it in default mode; compat mode writes what the AWS sample wrote.)
pub fn run_description(record: &RunRecord) -> String {
    format!("SageMaker {} {} ({})", record.lineage.kind.as_str().replace('_', " "), record.run.name, record.run.external_id)
}

/// The ARN a [`run_description`] carries.
pub fn arn_of(description: &str) -> Option<String> {
    let d = description.strip_prefix("SageMaker ")?;
    let d = ["training job ", "tuning job ", "pipeline execution ", "model package "]
        .iter()
        .find_map(|k| d.strip_prefix(k))?
        .strip_suffix(')')?;
    let open = d.rfind(" (")?;
    Some(d[open + 2..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_gives_its_arn_back() {
        assert_eq!(
            arn_of("SageMaker training job job (1) (arn:aws:sagemaker:us-east-1:1:training-job/job)").as_deref(),
            Some("arn:aws:sagemaker:us-east-1:1:training-job/job")
        );
        assert_eq!(arn_of("something else"), None);
        assert_eq!(
            arn_of("SageMaker tuning job t (arn:aws:sagemaker:us-east-1:1:hyper-parameter-tuning-job/t)").as_deref(),
            Some("arn:aws:sagemaker:us-east-1:1:hyper-parameter-tuning-job/t")
        );
    }
}
