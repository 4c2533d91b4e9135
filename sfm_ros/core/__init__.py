"""ROS-free core: geometry, networks, losses, data, training, evaluation, inference."""
