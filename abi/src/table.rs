//! A pack's table of kernels and the calls it answers: find the kernel, check the parameters
//! once for the batch, then run the kernel over the items in the wire layout (one call per item, or one
//! call for the whole batch).

use crate::kernel::{KernelError, Params, Tensor};
use crate::{BatchResults, Items, ItemsMut, TensorRef, WireData, run_each, run_each_in_place};

/// One kernel: its name, what it computes, the parameters it accepts, and its code.
#[derive(Clone, Copy)]
pub struct Kernel {
    /// The name callers use, e.g. `black_scholes`.
    pub name: &'static str,
    /// One line: its inputs and its output, as `crunch kernels` shows it.
    pub summary: &'static str,
    /// The parameter names the kernel accepts; a call with any other name is refused.
    pub params: &'static [&'static str],
    /// The kernel's code.
    pub compute: Compute,
}

/// How a kernel computes: one item per call, or the whole batch in one call.
#[derive(Clone, Copy)]
pub enum Compute {
    /// Computes one item from its input tensors, read in place from the batch.
    Item(fn(Params<'_>, &[TensorRef<'_>]) -> Result<Tensor, KernelError>),
    /// Computes every item of a batch in the wire layout: one output per item that succeeds, and the
    /// failures (see [`crate::map_elementwise`] and [`crate::map_records`]).
    Batch(fn(Params<'_>, Items<'_>) -> BatchResults<KernelError>),
    /// As `Batch`, given lists it may write its outputs over and hand back (see
    /// [`crate::map_records_in_place`]); a caller that only lends its lists gives a copy.
    BatchInPlace(fn(Params<'_>, ItemsMut<'_>) -> BatchResults<KernelError>),
}

/// Runs `kernel` of `table` on every item of a batch in the wire layout, reading the inputs in place: what
/// a pack's `run` export does. An unknown kernel or parameter fails every item with the same
/// error; a kernel error or an item that cannot be read fails only its item. An empty batch
/// refused as a whole answers with one failure at index 0, so that a host can refuse a job
/// before sending any work (see `wit/kernel.wit`).
pub fn run_wire(
    table: &[Kernel],
    kernel: &str,
    params: &[(String, Tensor)],
    items: Items<'_>,
) -> BatchResults<KernelError> {
    match find(table, kernel, params) {
        Ok(spec) => run_kernel(spec, params, items),
        Err(e) => refused(e, items),
    }
}

/// [`run_wire`] on lists the kernel may write over and keep: what a pack's `run` export does
/// with the lists it was given, so that a [`Compute::BatchInPlace`] kernel writes its outputs
/// over its inputs, and a [`Compute::Item`] kernel's outputs go over the items already
/// computed ([`run_each_in_place`]).
pub fn run_wire_in_place(
    table: &[Kernel],
    kernel: &str,
    params: &[(String, Tensor)],
    items: ItemsMut<'_>,
) -> BatchResults<KernelError> {
    match find(table, kernel, params) {
        Ok(Kernel {
            compute: Compute::BatchInPlace(compute),
            ..
        }) => compute(Params(params), items),
        Ok(Kernel {
            compute: Compute::Item(compute),
            ..
        }) => run_each_in_place(items, KernelError::from, |tensors| {
            compute(Params(params), tensors).map(|t| (t.shape, t.data))
        }),
        Ok(spec) => run_kernel(spec, params, items.items()),
        Err(e) => refused(e, items.items()),
    }
}

/// The answer to a call refused as a whole with `e`: one failure at index 0 for an empty batch
/// (the host's question whether the call is taken), else `e` for every item.
fn refused(e: KernelError, items: Items<'_>) -> BatchResults<KernelError> {
    if items.remaining() == 0 {
        return BatchResults {
            outputs: WireData::default(),
            failures: vec![(0, e)],
        };
    }
    run_each(items, KernelError::from, |_| Err(e.clone()))
}

/// Runs `kernel` of `table` on owned items, one result per item in order: the form native
/// callers and tests use. Items whose tensors do not match their shapes fail alone; the rest
/// run in the wire layout, as a batch does, so the results are those of [`run_wire`].
pub fn run(
    table: &[Kernel],
    kernel: &str,
    params: &[(String, Tensor)],
    items: &[Vec<Tensor>],
) -> Vec<Result<Tensor, KernelError>> {
    let spec = match find(table, kernel, params) {
        Ok(spec) => spec,
        Err(e) => return vec![Err(e); items.len()],
    };
    let mut wire = WireData::default();
    let mut results: Vec<Option<Result<Tensor, KernelError>>> = Vec::with_capacity(items.len());
    for item in items {
        match wire.push(item.iter().map(Tensor::view)) {
            Ok(()) => results.push(None),
            Err(e) => results.push(Some(Err(e.into()))),
        }
    }
    let out = run_kernel(spec, params, wire.items());
    let mut failures = out.failures.into_iter().peekable();
    let mut outputs = out.outputs.items();
    let mut tensors = Vec::new();
    for (index, slot) in results.iter_mut().filter(|r| r.is_none()).enumerate() {
        let read = outputs.next_into(&mut tensors);
        *slot = Some(match failures.next_if(|(i, _)| *i as usize == index) {
            Some((_, e)) => Err(e),
            None => match (read, tensors.as_slice()) {
                (Some(Ok(())), [t]) => Ok(Tensor::new(t.shape.to_vec(), t.data.to_vec())),
                _ => Err(KernelError::InvalidInput(format!(
                    "kernel `{kernel}` gave no output for item {index}"
                ))),
            },
        });
    }
    results.into_iter().flatten().collect()
}

/// Runs a known kernel, with checked parameters, on a batch in the wire layout.
fn run_kernel(
    spec: &Kernel,
    params: &[(String, Tensor)],
    items: Items<'_>,
) -> BatchResults<KernelError> {
    match spec.compute {
        Compute::Item(compute) => run_each(items, KernelError::from, |tensors| {
            compute(Params(params), tensors).map(|t| (t.shape, t.data))
        }),
        Compute::Batch(compute) => compute(Params(params), items),
        Compute::BatchInPlace(compute) => {
            let (mut shapes, mut data) = (items.shapes.to_vec(), items.data.to_vec());
            compute(
                Params(params),
                ItemsMut::new(items.remaining(), &mut shapes, &mut data),
            )
        }
    }
}

/// Finds the kernel and checks the parameters once for the whole batch.
fn find<'t>(
    table: &'t [Kernel],
    kernel: &str,
    params: &[(String, Tensor)],
) -> Result<&'t Kernel, KernelError> {
    let spec = table.iter().find(|k| k.name == kernel).ok_or_else(|| {
        let known: Vec<_> = table.iter().map(|k| k.name).collect();
        KernelError::UnknownKernel(format!(
            "no kernel `{kernel}` in this pack (it has: {})",
            known.join(", ")
        ))
    })?;
    for (name, value) in params {
        if !spec.params.contains(&name.as_str()) {
            return Err(KernelError::InvalidInput(format!(
                "kernel `{kernel}` takes no parameter `{name}` (it takes: {})",
                if spec.params.is_empty() {
                    "none".to_string()
                } else {
                    spec.params.join(", ")
                }
            )));
        }
        value.validate().map_err(|e| {
            KernelError::InvalidInput(format!("parameter `{name}`: {}", e.message()))
        })?;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negate(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
        match item {
            [x] => Ok(Tensor::new(
                x.shape.to_vec(),
                x.data.iter().map(|v| -v).collect(),
            )),
            _ => Err(KernelError::InvalidInput("one tensor".into())),
        }
    }

    fn scale(params: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
        let by = params.number_or("by", 2.0)?;
        let [x] = item else {
            return Err(KernelError::InvalidInput("one tensor".into()));
        };
        if x.data.iter().any(|v| *v < 0.0) {
            return Err(KernelError::Domain("negative".into()));
        }
        Ok(Tensor::new(
            x.shape.to_vec(),
            x.data.iter().map(|v| v * by).collect(),
        ))
    }

    fn halve(_: Params<'_>, items: Items<'_>) -> BatchResults<KernelError> {
        crate::map_elementwise(
            items,
            KernelError::from,
            |_| Ok(()),
            |xs, ys| {
                for (x, y) in xs.iter().zip(ys) {
                    *y = x / 2.0;
                }
            },
        )
    }

    const TABLE: &[Kernel] = &[
        Kernel {
            name: "negate",
            summary: "[x] -> -x",
            params: &[],
            compute: Compute::Item(negate),
        },
        Kernel {
            name: "scale",
            summary: "[x] with param by -> x * by",
            params: &["by"],
            compute: Compute::Item(scale),
        },
        Kernel {
            name: "halve",
            summary: "[x] -> x / 2, over the whole batch",
            params: &[],
            compute: Compute::Batch(halve),
        },
    ];

    fn param(name: &str, data: Vec<f64>) -> Vec<(String, Tensor)> {
        vec![(name.to_string(), Tensor::vector(data))]
    }

    #[test]
    fn unknown_kernel_fails_every_item() {
        let out = run(TABLE, "nope", &[], &[vec![], vec![]]);
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[0], Err(KernelError::UnknownKernel(m)) if m.contains("nope") && m.contains("negate, scale, halve"))
        );
    }

    #[test]
    fn unknown_parameter_is_named() {
        let out = run(
            TABLE,
            "negate",
            &param("by", vec![1.0]),
            &[vec![Tensor::vector(vec![1.0])]],
        );
        assert!(
            matches!(&out[0], Err(KernelError::InvalidInput(m)) if m.contains("`by`") && m.contains("none"))
        );
    }

    #[test]
    fn a_malformed_parameter_is_refused() {
        let bad = vec![(
            "by".to_string(),
            Tensor {
                shape: vec![2],
                data: vec![1.0],
            },
        )];
        let out = run(TABLE, "scale", &bad, &[vec![Tensor::vector(vec![1.0])]]);
        assert!(
            matches!(&out[0], Err(KernelError::InvalidInput(m)) if m.contains("parameter `by`"))
        );
        let two = param("by", vec![1.0, 2.0]);
        let out = run(TABLE, "scale", &two, &[vec![Tensor::vector(vec![1.0])]]);
        assert!(matches!(&out[0], Err(KernelError::InvalidInput(m)) if m.contains("one number")));
    }

    #[test]
    fn an_empty_batch_says_whether_the_call_is_taken() {
        let empty = WireData::default();
        let refused = run_wire(TABLE, "negate", &param("by", vec![1.0]), empty.items());
        assert_eq!(refused.outputs.count, 0);
        assert!(
            matches!(&refused.failures[..], [(0, KernelError::InvalidInput(m))] if m.contains("`by`"))
        );
        let taken = run_wire(TABLE, "scale", &param("by", vec![3.0]), empty.items());
        assert!(taken.failures.is_empty());
        assert!(matches!(
            &run_wire(TABLE, "nope", &[], empty.items()).failures[..],
            [(0, KernelError::UnknownKernel(_))]
        ));
    }

    #[test]
    fn inconsistent_tensor_fails_only_its_item() {
        let bad = Tensor {
            shape: vec![3],
            data: vec![1.0],
        };
        let out = run(
            TABLE,
            "scale",
            &param("by", vec![3.0]),
            &[
                vec![bad],
                vec![Tensor::vector(vec![1.0])],
                vec![Tensor::vector(vec![-1.0])],
            ],
        );
        assert!(matches!(&out[0], Err(KernelError::InvalidInput(m)) if m.contains("input 0")));
        assert_eq!(out[1], Ok(Tensor::vector(vec![3.0])));
        assert!(matches!(&out[2], Err(KernelError::Domain(_))));
    }

    #[test]
    fn wire_and_owned_runs_agree() {
        let items = vec![
            vec![Tensor::vector(vec![0.0, 1.0])],
            vec![],
            vec![Tensor::new(vec![], vec![-1.0])],
        ];
        let mut wire = WireData::default();
        for item in &items {
            wire.push(item.iter().map(Tensor::view)).unwrap();
        }
        for kernel in ["negate", "halve"] {
            let out = run_wire(TABLE, kernel, &[], wire.items());
            let owned = run(TABLE, kernel, &[], &items);
            let mut read = out.outputs.items();
            let mut tensors = Vec::new();
            for (i, expected) in owned.iter().enumerate() {
                read.next_into(&mut tensors).unwrap().unwrap();
                match expected {
                    Ok(t) => assert_eq!(tensors, vec![t.view()]),
                    Err(e) => {
                        assert!(tensors.is_empty());
                        assert!(out.failures.contains(&(i as u32, e.clone())));
                    }
                }
            }
            assert_eq!(out.failures.len(), 1, "{kernel}");
        }
    }
}
