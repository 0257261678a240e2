"""The fleet at a glance: each device's health (badges), the filtered device list, the overview."""
