//! The `crunch:kernel` bindings, generated once here, and the exports [`export_pack!`] wires a
//! pack's kernel table to: `list-kernels` from the table, `run` through
//! [`run_wire_in_place`](crate::run_wire_in_place) on the items as they arrive (no copy of any
//! tensor; a kernel that writes its outputs over its inputs hands the same lists back).
//! Only on `wasm32`.

use crate::kernel::{KernelError, Tensor};
use crate::table::{Kernel, run_wire_in_place};
use crate::{BatchResults, ItemsMut};

/// The bindings wit-bindgen generates for the `kernel-pack` world; [`export_pack!`] calls their
/// export macro from the pack's own crate, which also carries the world's type section.
#[allow(unsafe_code, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "kernel-pack",
        pub_export_macro: true,
    });
}

use bindings::crunch::kernel::types as wit;
pub use bindings::exports::crunch::kernel::kernels::Guest;
pub use wit::{
    BatchResults as WitBatchResults, KernelInfo, Packed as WitWireData, Tensor as WitTensor,
};

/// `list-kernels`: every kernel of `table`, in order.
pub fn list_kernels(table: &[Kernel]) -> Vec<KernelInfo> {
    table
        .iter()
        .map(|k| KernelInfo {
            name: k.name.to_string(),
            summary: k.summary.to_string(),
        })
        .collect()
}

/// `run`: the call answered from `table`, the parameters and results moved, not copied.
pub fn run(
    table: &[Kernel],
    kernel: String,
    params: Vec<(String, WitTensor)>,
    items: WitWireData,
) -> WitBatchResults {
    let params: Vec<(String, Tensor)> = params
        .into_iter()
        .map(|(name, t)| {
            (
                name,
                Tensor {
                    shape: t.shape,
                    data: t.data,
                },
            )
        })
        .collect();
    let WitWireData {
        count,
        mut shapes,
        mut data,
    } = items;
    let items = ItemsMut::new(count, &mut shapes, &mut data);
    let results: BatchResults<KernelError> = run_wire_in_place(table, &kernel, &params, items);
    WitBatchResults {
        outputs: WitWireData {
            count: results.outputs.count,
            shapes: results.outputs.shapes,
            data: results.outputs.data,
        },
        failures: results
            .failures
            .into_iter()
            .map(|(index, error)| wit::ItemFailure {
                index,
                error: match error {
                    KernelError::InvalidInput(m) => wit::KernelError::InvalidInput(m),
                    KernelError::Domain(m) => wit::KernelError::Domain(m),
                    KernelError::UnknownKernel(m) => wit::KernelError::UnknownKernel(m),
                },
            })
            .collect(),
    }
}
