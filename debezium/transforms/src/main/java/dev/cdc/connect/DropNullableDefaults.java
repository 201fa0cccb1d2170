package dev.cdc.connect;

import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.kafka.connect.components.Versioned;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.transforms.Transformation;

/**
 * Rebuilds a record's key and value schemas without the default value of any optional
 * field (at any depth: the before/after structs of a change event), and copies the values
 * as they are, so that a NULL stays NULL.
 *
 * <p>Debezium puts a column's DEFAULT into the Connect schema. A converter that reads a
 * struct with {@link Struct#get(String)} (the Apicurio Avro converter does, with no option
 * to do otherwise) then turns an explicit NULL into that default. Without defaults in the
 * schema there is nothing to substitute, and the schema the converter registers has none
 * either: an optional field is a union with null, defaulting to null. Required fields keep
 * their defaults: their values are never null.
 */
public final class DropNullableDefaults<R extends ConnectRecord<R>>
        implements Transformation<R>, Versioned {

    private static final int CACHE_SIZE = 256;
    // Cached for a schema with nothing to drop: the record keeps its own schema instance.
    private static final Schema UNCHANGED = SchemaBuilder.struct().name("unchanged").build();

    // Debezium keeps a table's schemas until the table changes: few distinct ones.
    private final Map<Schema, Schema> cache = new LinkedHashMap<>(16, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Schema, Schema> eldest) {
            return size() > CACHE_SIZE;
        }
    };

    @Override
    public R apply(R record) {
        Schema keySchema = stripped(record.keySchema());
        Schema valueSchema = stripped(record.valueSchema());
        if (keySchema == record.keySchema() && valueSchema == record.valueSchema()) {
            return record;
        }
        return record.newRecord(
                record.topic(),
                record.kafkaPartition(),
                keySchema,
                copy(record.key(), keySchema),
                valueSchema,
                copy(record.value(), valueSchema),
                record.timestamp(),
                record.headers());
    }

    private Schema stripped(Schema schema) {
        if (schema == null) {
            return null;
        }
        Schema out;
        synchronized (cache) {
            out = cache.computeIfAbsent(schema, s -> {
                Schema stripped = withoutNullableDefaults(s);
                return stripped == s ? UNCHANGED : stripped;
            });
        }
        return out == UNCHANGED ? schema : out;
    }

    /** The schema itself when nothing in it changes, so unchanged records pass as they are. */
    static Schema withoutNullableDefaults(Schema schema) {
        boolean dropDefault = schema.isOptional() && schema.defaultValue() != null;
        if (schema.type() != Schema.Type.STRUCT) {
            return dropDefault ? rest(schema, builderFor(schema)) : schema;
        }
        SchemaBuilder builder = SchemaBuilder.struct();
        boolean changed = dropDefault;
        for (Field field : schema.fields()) {
            Schema fieldSchema = withoutNullableDefaults(field.schema());
            changed |= fieldSchema != field.schema();
            builder.field(field.name(), fieldSchema);
        }
        return changed ? rest(schema, builder) : schema;
    }

    private static SchemaBuilder builderFor(Schema schema) {
        switch (schema.type()) {
            case ARRAY:
                return SchemaBuilder.array(schema.valueSchema());
            case MAP:
                return SchemaBuilder.map(schema.keySchema(), schema.valueSchema());
            default:
                return SchemaBuilder.type(schema.type());
        }
    }

    /** Everything but an optional schema's default: name, version, doc, parameters. */
    private static Schema rest(Schema schema, SchemaBuilder builder) {
        builder.name(schema.name()).version(schema.version()).doc(schema.doc());
        if (schema.parameters() != null) {
            builder.parameters(schema.parameters());
        }
        if (schema.isOptional()) {
            builder.optional();
        } else if (schema.defaultValue() != null) {
            builder.defaultValue(schema.defaultValue());
        }
        return builder.build();
    }

    /** The value under the new schema: structs rebuilt, nulls left null (never defaulted). */
    private static Object copy(Object value, Schema schema) {
        if (!(value instanceof Struct) || ((Struct) value).schema() == schema) {
            return value;
        }
        Struct from = (Struct) value;
        Struct to = new Struct(schema);
        for (Field field : schema.fields()) {
            to.put(field, copy(from.getWithoutDefault(field.name()), field.schema()));
        }
        return to;
    }

    @Override
    public ConfigDef config() {
        return new ConfigDef();
    }

    @Override
    public void configure(Map<String, ?> configs) {}

    @Override
    public void close() {}

    @Override
    public String version() {
        return "1";
    }
}
