"""The frame pipeline shared by the node and the offline bag tool (ROS-free, message in/out)."""
