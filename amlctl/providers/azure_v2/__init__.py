"""The azure-v2 backend: Azure ML through SDK v2 (azure-ai-ml), alongside the v1 `azure` one."""
