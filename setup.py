"""sfm_ros: builds with `colcon build` (ament_python) and with `pip install -e .`."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "sfm_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["models/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    python_requires=">=3.10",
    # torch: any 2.x from 2.1 on (admits the local 2.13 CPU build; never pins a CUDA wheel).
    install_requires=[
        "torch>=2.1,<3",
        "numpy>=1.23",
        "pyyaml>=5.4",
        "tqdm>=4.60",
        "tensorboard>=2.10",
        "rosbags>=0.10",
        "pillow>=9.0",
        "opencv-python-headless>=4.5",
        "matplotlib>=3.5",
    ],
    extras_require={
        # triton: the tests run the CUDA cost-aggregation kernel under its interpreter
        "test": ["pytest>=7", "ruff>=0.5", 'triton>=3.0; platform_system == "Linux"'],
        "onnx": ["onnx>=1.14", "onnxruntime>=1.16"],
    },
    zip_safe=True,
    maintainer="sfm_ros developers",
    maintainer_email="sfm-ros@example.org",
    description="Self-supervised monocular depth and ego-motion (SfMLearner family) for ROS 2.",
    license="BSD-3-Clause",
    entry_points={
        "console_scripts": [
            "sfm-ros = sfm_ros.cli:main",
            "depth_odometry = sfm_ros.ros.depth_odometry_node:main",
            "finetune = sfm_ros.ros.finetune_node:main",
            "depth_odometry_finetune = sfm_ros.ros.finetune_node:main_combined",
        ],
    },
)
