//! Parses `--param NAME=VALUE`: a number is a scalar, `a,b,c` or `[a, b, c]` a 1-D tensor.

use anyhow::{Context, Result, bail};
use crunch::Tensor;

/// Parses one `NAME=VALUE` parameter.
pub fn parse(spec: &str) -> Result<(String, Tensor)> {
    let Some((name, value)) = spec.split_once('=') else {
        bail!("parameter `{spec}` must look like NAME=VALUE, e.g. q=5,50,95");
    };
    let name = name.trim();
    if name.is_empty() {
        bail!("parameter `{spec}` has an empty name");
    }
    let value = value.trim();
    let list = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
    let is_list = list.is_some() || value.contains(',');
    let values = list
        .unwrap_or(value)
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<f64>()
                .with_context(|| format!("parameter `{name}`: `{v}` is not a number"))
        })
        .collect::<Result<Vec<f64>>>()?;
    let tensor = if is_list {
        Tensor {
            shape: vec![u32::try_from(values.len())?],
            data: values,
        }
    } else {
        match values[..] {
            [v] => Tensor {
                shape: vec![],
                data: vec![v],
            },
            _ => bail!("parameter `{name}` has no value"),
        }
    };
    Ok((name.to_string(), tensor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_lists_and_errors() {
        assert_eq!(parse("k=3").unwrap().1.shape, Vec::<u32>::new());
        assert_eq!(parse("q=1, 2,3").unwrap().1.data, vec![1.0, 2.0, 3.0]);
        assert_eq!(parse("q=[5]").unwrap().1.shape, vec![1]);
        assert!(parse("q").is_err());
        assert!(
            parse("q=x")
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        assert!(parse("q=").is_err());
    }
}
