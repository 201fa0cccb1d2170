"""What runs the consumer beside Debezium elsewhere: docker compose and Kubernetes (with
Strimzi managing Kafka Connect), made from the code and pins the local stack runs."""
