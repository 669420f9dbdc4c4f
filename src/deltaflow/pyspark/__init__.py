"""``deltaflow.pyspark.ml.autolog`` lives here, mirroring ``mlflow.pyspark.ml``."""
