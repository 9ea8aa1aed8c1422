//! The WIT adapter: exports `crunch:kernel/kernels` by converting to and from the plain-Rust
//! types of this crate. No numeric code lives here.

// The export glue that wit-bindgen generates uses `unsafe` attributes.
#![allow(unsafe_code)]

mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "kernel-pack" });
}

use bindings::crunch::kernel::types::{
    BatchResults, KernelError as WitError, KernelInfo, Packed, Tensor as WitTensor,
};
use bindings::exports::crunch::kernel::kernels::Guest;

struct KernelPack;

impl Guest for KernelPack {
    fn list_kernels() -> Vec<KernelInfo> {
        crate::KERNELS
            .iter()
            .map(|k| KernelInfo {
                name: k.name.to_string(),
                summary: k.summary.to_string(),
            })
            .collect()
    }

    fn run(kernel: String, params: Vec<(String, WitTensor)>, items: Packed) -> BatchResults {
        let params: Vec<_> = params.into_iter().map(|(k, t)| (k, from_wit(t))).collect();
        let items = crunch_abi::Items::new(items.count, &items.shapes, &items.data);
        let results = crate::run_packed(&kernel, &params, items).map_errors(error_to_wit);
        crunch_abi::wit_batch_results!(results, bindings::crunch::kernel::types)
    }
}

fn from_wit(t: WitTensor) -> crate::Tensor {
    crate::Tensor {
        shape: t.shape,
        data: t.data,
    }
}

fn error_to_wit(e: crate::KernelError) -> WitError {
    match e {
        crate::KernelError::InvalidInput(m) => WitError::InvalidInput(m),
        crate::KernelError::Domain(m) => WitError::Domain(m),
        crate::KernelError::UnknownKernel(m) => WitError::UnknownKernel(m),
    }
}

bindings::export!(KernelPack with_types_in bindings);
