# syntax=docker/dockerfile:1
# Kafka Connect for docker compose: the Debezium image, plus what the local stack adds with
# the same pom (debezium/): the pinned Apicurio Avro converter (the image's own is 3.x) and
# our transforms, built from source (the Avro encoding needs them to keep NULLs).
# Built from the project root; compose passes CONNECT_IMAGE from the pinned versions.
ARG MAVEN_IMAGE=maven:3.9.9-eclipse-temurin-17
ARG CONNECT_IMAGE=quay.io/debezium/connect:3.6.3.Final

FROM ${MAVEN_IMAGE} AS plugins
COPY debezium /debezium
RUN mvn -B -q -f /debezium/pom.xml -pl converter-apicurio,transforms -am package -Dcdc.jvm.home=/out

FROM ${CONNECT_IMAGE}
COPY --from=plugins /out/plugins /kafka/connect
