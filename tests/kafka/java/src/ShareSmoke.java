// Produces N records with Kafka's Java producer, then consumes them with a KafkaShareConsumer
// (a KIP-932 share group, Kafka 4.2+) and checks the count. The share group is first set to
// start at the earliest offset (share.auto.offset.reset is a group config, "latest" by default).
//
//   javac -cp 'tests/kafka/.lib/*' -d tests/kafka/.classes tests/kafka/java/src/ShareSmoke.java
//   java -cp 'tests/kafka/.lib/*:tests/kafka/.classes' ShareSmoke BOOTSTRAP [TOPIC] [N]
// BOOTSTRAP may be "-" to take $KAFKA_BOOTSTRAP.
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class ShareSmoke {
  public static void main(String[] args) throws Exception {
    String bootstrap = args.length > 0 && !args[0].equals("-") ? args[0] : System.getenv("KAFKA_BOOTSTRAP");
    if (bootstrap == null || bootstrap.isEmpty()) {
      System.err.println("ShareSmoke: no bootstrap address: pass it or set KAFKA_BOOTSTRAP");
      System.exit(2);
    }
    String topic = args.length > 1 ? args[1] : "smoke-java-share";
    int n = args.length > 2 ? Integer.parseInt(args[2]) : 10;
    String group = topic + "-share";
    long deadline = System.currentTimeMillis() + 30_000;

    Properties ap = new Properties();
    ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    try (Admin admin = Admin.create(ap)) {
      ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
      AlterConfigOp op = new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET);
      admin.incrementalAlterConfigs(Map.of(res, List.of(op))).all().get();
    }

    Properties pp = new Properties();
    pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
      for (int i = 0; i < n; i++) {
        producer.send(new ProducerRecord<>(topic, "k" + i, "java share " + i)).get();
      }
    }

    Properties cp = new Properties();
    cp.put("bootstrap.servers", bootstrap);
    cp.put("group.id", group);
    cp.put("key.deserializer", StringDeserializer.class.getName());
    cp.put("value.deserializer", StringDeserializer.class.getName());
    int got = 0;
    try (KafkaShareConsumer<String, String> consumer = new KafkaShareConsumer<>(cp)) {
      consumer.subscribe(List.of(topic));
      while (got < n && System.currentTimeMillis() < deadline) {
        ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(500));
        got += recs.count();
      }
      consumer.commitSync();
    }
    System.out.println("kafka-clients " + org.apache.kafka.common.utils.internals.AppInfoParser.getVersion()
        + " share group: produced " + n + " consumed " + got);
    System.exit(got == n ? 0 : 1);
  }
}
