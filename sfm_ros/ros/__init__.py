"""ROS layer: message conversion (ROS-free, field based) and thin rclpy nodes."""
