// The transaction of benchmarks/transactions.py through the Java client, for a side-by-side baseline:
// `per-txn` 200-byte records spread over the given one-partition topics, the offsets of the consumed input
// sent to the transaction, then commit; `rounds` transactions. Prints one line of JSON: the per-transaction
// records/s and the time of each step, one entry per transaction (the caller takes the medians).
//
//   java -cp <dir of this class>:<kafka libs>/* TxnProbe <bootstrap> <source> <group> <per-txn> <rounds> <topic>...

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class TxnProbe {
    public static void main(String[] args) {
        String bootstrap = args[0], source = args[1], group = args[2];
        int perTxn = Integer.parseInt(args[3]), rounds = Integer.parseInt(args[4]);
        List<String> topics = Arrays.asList(args).subList(5, args.length);

        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("group.id", group);
        c.put("auto.offset.reset", "earliest");
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        Properties p = new Properties();  // as benchmarks/transactions.py's librdkafka producer
        p.put("bootstrap.servers", bootstrap);
        p.put("transactional.id", group);
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("linger.ms", "5");
        // A transaction's records for a partition in one batch, as librdkafka (1,000,000) and aiokafka (1 MiB here)
        // put them; not 1 MiB: the Java client takes batch.size from its 32 MiB buffer.memory per partition.
        p.put("batch.size", "131072");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());

        byte[] value = new byte[200];
        Arrays.fill(value, (byte) 'x');
        List<String> rates = new ArrayList<>(), steps = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c);
             KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            consumer.subscribe(List.of(source));
            producer.initTransactions();
            for (int r = 0; r < rounds; r++) {
                int got = 0;
                java.util.Map<TopicPartition, OffsetAndMetadata> offsets = new java.util.HashMap<>();
                while (got < perTxn) {
                    ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofSeconds(1));
                    got += records.count();
                }
                for (TopicPartition tp : consumer.assignment()) {
                    offsets.put(tp, new OffsetAndMetadata(consumer.position(tp)));
                }
                long start = System.nanoTime();
                producer.beginTransaction();
                for (int i = 0; i < perTxn; i++) {
                    producer.send(new ProducerRecord<>(topics.get(i % topics.size()), value));
                }
                producer.flush();
                long flushed = System.nanoTime();
                producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                long sent = System.nanoTime();
                producer.commitTransaction();
                long done = System.nanoTime();
                rates.add(String.valueOf(perTxn / ((done - start) / 1e9)));
                steps.add(String.format("[%f, %f, %f]", (flushed - start) / 1e9, (sent - flushed) / 1e9, (done - sent) / 1e9));
            }
        }
        System.out.println("{\"rates\": [" + String.join(", ", rates) + "], \"steps\": [" + String.join(", ", steps) + "]}");
    }
}
