//! The CUDA toolkit variant (`cuda_toolkit: true`), against the real
//! engine: the shipped `pytorch-2.11-toolkit` image (built by the suite's
//! gate stage, else here) is started with `up` and a CUDA extension is
//! compiled in it by `torch.utils.cpp_extension.load_inline` as user `dev`
//! (nvcc and the host compiler need no GPU; with one, the kernel runs too).
//! `lock` pins every toolkit wheel to the resolved CUDA; a CUDA 12
//! environment is refused there, naming the wheel without nvcc.

mod common;
use common::testenv::TestEnv;
use common::{repo, text};

const ENV: &str = "pytorch-2.11-toolkit";

/// The shipped toolkit environment's image, with this machine's harness
/// build when there is one (the image the gate stage checked), built when
/// missing.
fn toolkit_image() -> String {
    let root = repo();
    let spec = xtask::spec::Spec::load(&root.join(xtask::spec::SPEC_FILE)).unwrap();
    let lock = xtask::lock::Lock::read(&root.join(xtask::lock::LOCK_FILE)).unwrap();
    let env = spec.env(Some(ENV)).unwrap().clone();
    assert!(env.cuda_toolkit, "{ENV} has cuda_toolkit: true");
    let harness = xtask::build::harness::up_to_date(&lock.environments[ENV]).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let docker = xtask::docker::Docker::connect().await.unwrap();
        xtask::build::ensure_image(&docker, &spec, &lock, &env, harness.as_deref())
            .await
            .unwrap()
            .tag
    })
}

/// A kernel adding 1 to every element, bound to Python as `add_one_`.
const EXTENSION: &str = r#"
import os, sys, torch
from torch.utils import cpp_extension
cuda = r'''
__global__ void add_one_kernel(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += 1.0f;
}
torch::Tensor add_one_(torch::Tensor x) {
    TORCH_CHECK(x.is_cuda() && x.scalar_type() == torch::kFloat, "a float CUDA tensor");
    int n = x.numel();
    add_one_kernel<<<(n + 255) / 256, 256>>>(x.data_ptr<float>(), n);
    return x;
}
'''
os.makedirs(sys.argv[1], exist_ok=True)
module = cpp_extension.load_inline(
    name="torchenv_add_one",
    cpp_sources="torch::Tensor add_one_(torch::Tensor x);",
    cuda_sources=cuda,
    functions=["add_one_"],
    build_directory=sys.argv[1],
)
print("CUDA_HOME", cpp_extension.CUDA_HOME)
print("compiled", module.__file__, os.path.getsize(module.__file__))
if torch.cuda.is_available():
    x = torch.zeros(4096, device="cuda")
    module.add_one_(x)
    torch.cuda.synchronize()
    print("kernel ran on", torch.cuda.get_device_name(0), "sum", float(x.sum()))
else:
    print("no GPU here: compiled, not run")
"#;

#[test]
fn toolkit_environment_compiles_a_cuda_extension() {
    let image = toolkit_image();
    // The test spec's own fields do not matter to `up --image`: it starts
    // the toolkit image with the test's ports, workspace and user.
    let env = TestEnv::new("toolkit", "");
    let out = env.run(&["up", "--image", &image, "--timeout", "180"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = env.run(&["exec", &env.name, "--", "nvcc", "--version"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("release 13.0"), "{}", text(&out));
    let out = env.run(&[
        "exec",
        &env.name,
        "--",
        "sh",
        "-c",
        "echo $CUDA_HOME; id -un",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.split_whitespace().collect::<Vec<_>>(),
        ["/opt/venv/cuda", "dev"],
        "{}",
        text(&out)
    );

    // Compiled into the workspace, so the host sees the module (as `dev`'s
    // file); SASS for sm_80 and PTX, which newer GPUs JIT-compile.
    let script = env.workspace.join("extension.py");
    std::fs::write(&script, EXTENSION).unwrap();
    let out = env
        .cmd(&[
            "exec",
            &env.name,
            "--",
            "env",
            "TORCH_CUDA_ARCH_LIST=8.0+PTX",
            "python",
            "/workspace/extension.py",
            "/workspace/build",
        ])
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("CUDA_HOME /opt/venv/cuda"), "{said}");
    let built = env.workspace.join("build/torchenv_add_one.so");
    assert!(built.is_file(), "{said}");
    assert!(
        said.contains("no GPU here: compiled, not run") || said.contains("sum 4096.0"),
        "{said}"
    );
    eprintln!("{said}");
}

/// CUDA 12's nvcc wheels on PyPI hold ptxas only: `cuda_toolkit: true` on
/// torch 2.6 (CUDA 12.4) is refused by `lock`, naming the wheel; on torch
/// 2.11 it resolves nvcc 13.0 and ninja (`--dry-run`: nothing written).
#[test]
fn lock_adds_the_toolkit_of_the_resolved_cuda_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "version: 1\ndefault: tk211\nenvironments:\n  tk211:\n    torch: 2.11.0\n    torchvision: 0.26.0\n    cuda_toolkit: true\n  tk26:\n    torch: 2.6.0\n    torchvision: 0.21.0\n    cuda_toolkit: true\n";
    std::fs::write(dir.path().join("environments.yaml"), spec).unwrap();
    let xtask = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--spec")
            .arg(dir.path().join("environments.yaml"))
            .args(args)
            .env_remove("TORCHENV_LOCK")
            .output()
            .unwrap()
    };
    let out = xtask(&["lock", "tk211", "--dry-run"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("CUDA 13.0"), "{said}");
    assert!(said.contains("CUDA toolkit: "), "{said}");
    // nvcc 13.0 with the nvvm and crt of 13.0, never a newer CUDA's.
    for wheel in [
        "nvidia-cuda-nvcc",
        "nvidia-cuda-cccl",
        "nvidia-nvvm",
        "nvidia-cuda-crt",
    ] {
        assert!(said.contains(&format!("{wheel} 13.0.")), "{wheel}: {said}");
    }
    assert!(said.contains("ninja "), "{said}");

    let out = xtask(&["lock", "tk26", "--dry-run"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("nvidia-cuda-nvcc-cu12 12.4."), "{said}");
    assert!(said.contains("has no nvcc"), "{said}");
    assert!(!dir.path().join("environments.lock").exists());
}
