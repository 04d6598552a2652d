"""The configuration, the DAG, the local runner, the report and the command line; imports
components/ and models/, never serving/ or kubeflow/."""
