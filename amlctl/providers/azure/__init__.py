"""The Azure backend: Azure Machine Learning through azureml-sdk (v1), imported only when used."""
