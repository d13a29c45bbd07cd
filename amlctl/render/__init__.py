"""Views of a plan: human (Terraform-like text), JSON (stable, documented), Markdown (PR)."""
