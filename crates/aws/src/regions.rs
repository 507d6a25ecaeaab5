//! The regions of the AWS partitions, to refuse a mistyped region before any call.
//!
//! A region that is not listed is refused with the closest listed name as a suggestion
//! (`eu-wst-1` → `eu-west-1`): with a mistyped region the SDK would only fail later, on a DNS
//! lookup of an endpoint that does not exist, and a local endpoint accepts any region at all.
//! The list follows the SDK's partition data; a region launched after this release can be
//! allowed with `DASK_SERVERLESS_AWS_EXTRA_REGIONS` (comma-separated names).

/// Every region of the `aws`, `aws-cn`, `aws-us-gov`, `aws-eusc` and ISO partitions.
const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "cn-north-1",
    "cn-northwest-1",
    "eusc-de-east-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-isob-west-1",
    "eu-isoe-west-1",
    "us-isof-east-1",
    "us-isof-south-1",
];

/// Names allowed beyond [`REGIONS`].
pub(crate) const EXTRA_REGIONS_VARIABLE: &str = "DASK_SERVERLESS_AWS_EXTRA_REGIONS";

/// Whether `region` is a known region (or one allowed by `extra`, comma-separated).
pub(crate) fn is_known(region: &str, extra: Option<&str>) -> bool {
    REGIONS.contains(&region)
        || extra.is_some_and(|extra| extra.split(',').any(|name| name.trim() == region))
}

/// The known region closest to `region`, if it is close enough to be a typo.
pub(crate) fn suggestion(region: &str) -> Option<&'static str> {
    let lowered = region.trim().to_ascii_lowercase().replace('_', "-");
    REGIONS
        .iter()
        .map(|known| (edit_distance(&lowered, known), *known))
        .filter(|(distance, _)| *distance <= 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (row, left_char) in left.chars().enumerate() {
        let mut current = vec![row + 1; right.len() + 1];
        for (column, right_char) in right.iter().enumerate() {
            let substitution = previous[column] + usize::from(left_char != *right_char);
            current[column + 1] = substitution
                .min(previous[column + 1] + 1)
                .min(current[column] + 1);
        }
        previous = current;
    }
    previous[right.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_regions_and_typos() {
        assert!(is_known("eu-west-1", None));
        assert!(is_known("us-gov-west-1", None));
        assert!(!is_known("eu-wst-1", None));
        assert!(is_known("xx-new-1", Some("yy-new-2, xx-new-1")));
        assert_eq!(suggestion("eu-wst-1"), Some("eu-west-1"));
        assert_eq!(suggestion("US_EAST_1"), Some("us-east-1"));
        assert_eq!(suggestion("europe"), None);
    }
}
