//! Reads the NumPy/SciPy reference vectors (`shared/golden/*.json`) and compares against them.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The twelve kernels of the standard pack, each with one golden file.
pub const KERNELS: [&str; 12] = [
    "describe",
    "percentile",
    "norm_cdf",
    "norm_ppf",
    "black_scholes",
    "implied_vol",
    "ols",
    "fft_power",
    "cubic_spline",
    "matmul",
    "convolve",
    "corrcoef",
];

/// A tensor as the golden files write it.
#[derive(Clone, Debug, Deserialize)]
pub struct GoldenTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<u32>,
    /// Row-major values.
    pub data: Vec<f64>,
}

/// One item: its inputs and the reference output.
#[derive(Clone, Debug, Deserialize)]
pub struct GoldenItem {
    /// The item's input tensors.
    pub inputs: Vec<GoldenTensor>,
    /// What NumPy/SciPy computed.
    pub expected: GoldenTensor,
}

/// One case: a batch of items run together with the same params and tolerances.
#[derive(Clone, Debug, Deserialize)]
pub struct GoldenCase {
    /// Named parameters; numbers and lists of numbers.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Relative tolerance (numpy.isclose).
    pub rtol: f64,
    /// Absolute tolerance (numpy.isclose).
    pub atol: f64,
    /// The batch.
    pub items: Vec<GoldenItem>,
}

/// One golden file.
#[derive(Clone, Debug, Deserialize)]
pub struct GoldenFile {
    /// Kernel name.
    pub kernel: String,
    /// The NumPy/SciPy call that produced the vectors.
    pub reference: String,
    /// The batches.
    pub cases: Vec<GoldenCase>,
}

impl GoldenTensor {
    /// The tensor as the host passes it to a kernel pack.
    pub fn to_host(&self) -> crunch::Tensor {
        crunch::Tensor {
            shape: self.shape.clone(),
            data: self.data.clone(),
        }
    }
}

impl GoldenItem {
    /// The item's inputs as host tensors.
    pub fn host_inputs(&self) -> Vec<crunch::Tensor> {
        self.inputs.iter().map(GoldenTensor::to_host).collect()
    }
}

impl GoldenCase {
    /// The params as tensors: a number is a scalar (shape []), a list is 1-D.
    pub fn params(&self) -> Result<Vec<(String, GoldenTensor)>> {
        self.params
            .iter()
            .map(|(name, value)| {
                let tensor = match value {
                    serde_json::Value::Number(n) => GoldenTensor {
                        shape: vec![],
                        data: vec![n.as_f64().unwrap_or(f64::NAN)],
                    },
                    serde_json::Value::Array(values) => {
                        let data = values
                            .iter()
                            .map(|v| v.as_f64().context("param lists hold numbers"))
                            .collect::<Result<Vec<_>>>()?;
                        GoldenTensor {
                            shape: vec![data.len() as u32],
                            data,
                        }
                    }
                    other => bail!("param `{name}` is neither a number nor a list: {other}"),
                };
                Ok((name.clone(), tensor))
            })
            .collect()
    }
}

/// The golden directory: `$CRUNCH_GOLDEN_DIR`, else `../shared/golden` beside the repository.
pub fn dir() -> PathBuf {
    std::env::var_os("CRUNCH_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::repo_root().join("../shared/golden"))
}

/// Loads the golden file of `kernel`; a missing file is an error, never a skip.
pub fn load(kernel: &str) -> Result<GoldenFile> {
    load_from(&dir().join(format!("{kernel}.json")))
}

fn load_from(path: &Path) -> Result<GoldenFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading golden file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing golden file {}", path.display()))
}

/// Every golden file, one per kernel of the standard pack.
pub fn load_all() -> Result<Vec<GoldenFile>> {
    KERNELS.iter().map(|k| load(k)).collect()
}

/// numpy.isclose: `|got - expected| <= atol + rtol * |expected|`; NaN matches NaN.
pub fn isclose(got: f64, expected: f64, rtol: f64, atol: f64) -> bool {
    if got.is_nan() || expected.is_nan() {
        return got.is_nan() && expected.is_nan();
    }
    if got.is_infinite() || expected.is_infinite() {
        return got == expected;
    }
    (got - expected).abs() <= atol + rtol * expected.abs()
}

/// Checks one output against its reference; the error says where and by how much it differs.
pub fn compare(
    shape: &[u32],
    data: &[f64],
    expected: &GoldenTensor,
    rtol: f64,
    atol: f64,
) -> Result<()> {
    if shape != expected.shape.as_slice() {
        bail!("shape {shape:?}, expected {:?}", expected.shape);
    }
    for (i, (&g, &e)) in data.iter().zip(&expected.data).enumerate() {
        if !isclose(g, e, rtol, atol) {
            bail!(
                "value {i}: got {g:e}, expected {e:e} (diff {:e}, allowed {:e})",
                (g - e).abs(),
                atol + rtol * e.abs()
            );
        }
    }
    Ok(())
}
