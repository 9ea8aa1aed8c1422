//! Parses `--param NAME=VALUE`: a number is a scalar; `a,b,c` a 1-D tensor (`a,` one of one
//! value); a bracketed JSON list, nested for more dimensions (`[[1, 2], [3, 4]]`), a tensor of
//! that shape.

use anyhow::{Context, Result, anyhow, bail, ensure};
use crunch::Tensor;
use serde_json::Value;

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
    let tensor = if value.starts_with('[') {
        nested(value).map_err(|e| anyhow!("parameter `{name}`: {e:#}"))?
    } else if value.contains(',') {
        list(name, value)?
    } else if value.is_empty() {
        bail!("parameter `{name}` has no value");
    } else {
        Tensor {
            shape: vec![],
            data: vec![number(name, value)?],
        }
    };
    Ok((name.to_string(), tensor))
}

/// Refuses a parameter given twice (clap would keep both, and a pack one of them).
pub fn refuse_repeats(params: &[(String, Tensor)]) -> Result<()> {
    for (i, (name, _)) in params.iter().enumerate() {
        ensure!(
            !params[..i].iter().any(|(n, _)| n == name),
            "parameter `{name}` is given twice"
        );
    }
    Ok(())
}

fn number(name: &str, text: &str) -> Result<f64> {
    text.parse::<f64>()
        .with_context(|| format!("parameter `{name}`: `{text}` is not a number"))
}

/// `a,b,c`: every entry a number; one trailing comma allowed (`5,` is a list of one value).
fn list(name: &str, value: &str) -> Result<Tensor> {
    let entries: Vec<&str> = value.split(',').map(str::trim).collect();
    let entries = match entries.split_last() {
        Some((&"", rest)) => rest,
        _ => &entries[..],
    };
    let data = entries
        .iter()
        .enumerate()
        .map(|(i, v)| {
            ensure!(
                !v.is_empty(),
                "parameter `{name}`: entry {i} of `{value}` is empty"
            );
            number(name, v)
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(Tensor {
        shape: vec![u32::try_from(data.len())?],
        data,
    })
}

/// A JSON list of numbers, or of lists of equal shape, as a tensor.
fn nested(value: &str) -> Result<Tensor> {
    let json: Value = serde_json::from_str(value).context("not a JSON list of numbers")?;
    let mut shape = Vec::new();
    let mut level = &json;
    while let Value::Array(items) = level {
        shape.push(u32::try_from(items.len())?);
        match items.first() {
            Some(first) => level = first,
            None => break,
        }
    }
    let mut data = Vec::new();
    flatten(&json, &shape, &mut data)?;
    Ok(Tensor { shape, data })
}

fn flatten(value: &Value, shape: &[u32], data: &mut Vec<f64>) -> Result<()> {
    match (value, shape.split_first()) {
        (Value::Array(items), Some((&len, rest))) => {
            ensure!(
                items.len() == len as usize,
                "rows differ in length ({} and {len}): a tensor is rectangular",
                items.len()
            );
            items.iter().try_for_each(|v| flatten(v, rest, data))
        }
        (Value::Number(n), None) => {
            data.push(n.as_f64().context("number out of range")?);
            Ok(())
        }
        (Value::Array(_), None) => bail!("lists nest deeper in some rows than in others"),
        (other, _) => bail!("expected a number or a list, got {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_lists_and_errors() {
        assert_eq!(parse("k=3").unwrap().1.shape, Vec::<u32>::new());
        assert_eq!(parse("q=1, 2,3").unwrap().1.data, vec![1.0, 2.0, 3.0]);
        assert_eq!(parse("q=[5]").unwrap().1.shape, vec![1]);
        assert_eq!(parse("q=5,").unwrap().1.shape, vec![1]);
        assert!(parse("q").is_err());
        assert!(
            parse("q=x")
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        assert!(parse("q=").is_err());
        let err = parse("q=50,,90").unwrap_err().to_string();
        assert!(err.contains("entry 1"), "{err}");
        assert!(parse("q=,5").is_err() && parse("q=5,,").is_err());
    }

    #[test]
    fn nested_lists_give_higher_ranks() {
        let (_, t) = parse("q=[[5, 50], [90, 95]]").unwrap();
        assert_eq!((t.shape, t.data), (vec![2, 2], vec![5.0, 50.0, 90.0, 95.0]));
        assert_eq!(parse("q=[]").unwrap().1.shape, vec![0]);
        assert!(format!("{:#}", parse("q=[[1, 2], [3]]").unwrap_err()).contains("rows differ"));
        assert!(parse("q=[[1], 2]").is_err() && parse("q=[1, [2]]").is_err());
        assert!(parse("q=[1,,2]").is_err());
    }

    #[test]
    fn repeats_are_refused() {
        let params = vec![parse("q=1").unwrap(), parse("k=2").unwrap()];
        assert!(refuse_repeats(&params).is_ok());
        let params = vec![parse("q=1").unwrap(), parse("q=2").unwrap()];
        assert!(
            refuse_repeats(&params)
                .unwrap_err()
                .to_string()
                .contains("given twice")
        );
    }
}
