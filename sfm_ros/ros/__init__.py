"""Thin rclpy nodes over `sfm_ros.pipeline` (the only package that imports rclpy)."""
