// A share group's start offsets moved, read and deleted through Kafka's own Admin client, on
// a topic whose partitions several brokers lead (cli/tests/cluster_share.rs): the Admin sends
// these requests to the group's coordinator, which has each partition's leader serve its part.
//
//   java -cp 'tests/kafka/.lib/*:CLASSES' ShareMove BOOTSTRAP TOPIC GROUP PARTITIONS PER_PARTITION MOVE_TO REPLICAS
//
// Makes the topic (with REPLICAS replicas of each partition) and PER_PARTITION records on each partition, then
// prints one line per step; every fact is a count or an offset, so the Rust test checks them
// exactly.
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.TreeSet;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ListShareGroupOffsetsSpec;
import org.apache.kafka.clients.admin.SharePartitionOffsetInfo;
import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;

public final class ShareMove {
  static void say(String line) {
    System.out.println(line);
    System.out.flush();
  }

  static KafkaShareConsumer<String, String> consumer(String bootstrap, String group) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("group.id", group);
    p.put("key.deserializer", StringDeserializer.class.getName());
    p.put("value.deserializer", StringDeserializer.class.getName());
    p.put("share.acknowledgement.mode", "explicit");
    return new KafkaShareConsumer<>(p);
  }

  /** Accepts records until `n` arrived (`n` < 0: until none came for 3 s) or 60 s passed:
   *  partition -> offsets, and the delivery counts seen. */
  static Map<Integer, TreeSet<Long>> drain(String bootstrap, String topic, String group, int n, TreeSet<String> counts) {
    Map<Integer, TreeSet<Long>> got = new TreeMap<>();
    int total = 0;
    try (KafkaShareConsumer<String, String> c = consumer(bootstrap, group)) {
      c.subscribe(List.of(topic));
      long deadline = System.currentTimeMillis() + 60_000;
      long quietSince = System.currentTimeMillis();
      while ((n < 0 ? total == 0 || System.currentTimeMillis() - quietSince < 3_000 : total < n)
          && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          quietSince = System.currentTimeMillis();
          c.acknowledge(r, AcknowledgeType.ACCEPT);
          if (got.computeIfAbsent(r.partition(), k -> new TreeSet<>()).add(r.offset())) total++;
          counts.add(r.deliveryCount().map(Object::toString).orElse("none"));
        }
        c.commitSync();
      }
      // Anything more would be a record delivered twice or out of range.
      for (ConsumerRecord<String, String> r : c.poll(Duration.ofSeconds(2))) {
        c.acknowledge(r, AcknowledgeType.ACCEPT);
        say("extra partition=" + r.partition() + " offset=" + r.offset());
      }
      c.commitSync();
    }
    return got;
  }

  static String summary(Map<Integer, TreeSet<Long>> got) {
    List<String> parts = new ArrayList<>();
    for (Map.Entry<Integer, TreeSet<Long>> e : got.entrySet()) {
      TreeSet<Long> s = e.getValue();
      parts.add(e.getKey() + ":" + s.size() + "@" + s.first() + "-" + s.last());
    }
    return String.join(",", parts);
  }

  static String starts(Admin admin, String group) throws Exception {
    Map<TopicPartition, SharePartitionOffsetInfo> offs = admin
        .listShareGroupOffsets(Map.of(group, new ListShareGroupOffsetsSpec()))
        .partitionsToOffsetInfo(group).get();
    Map<Integer, Long> sorted = new TreeMap<>();
    for (Map.Entry<TopicPartition, SharePartitionOffsetInfo> e : offs.entrySet()) {
      sorted.put(e.getKey().partition(), e.getValue() == null ? -1L : e.getValue().startOffset());
    }
    return sorted.toString().replace(" ", "");
  }

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0], topic = args[1], group = args[2];
    int partitions = Integer.parseInt(args[3]);
    int per = Integer.parseInt(args[4]);
    long moveTo = Long.parseLong(args[5]);
    short replicas = Short.parseShort(args[6]);
    Properties ap = new Properties();
    ap.put("bootstrap.servers", bootstrap);
    try (Admin admin = Admin.create(ap)) {
      admin.createTopics(List.of(new NewTopic(topic, partitions, replicas))).all().get();
      Properties pp = new Properties();
      pp.put("bootstrap.servers", bootstrap);
      pp.put("acks", "all");
      pp.put("key.serializer", StringSerializer.class.getName());
      pp.put("value.serializer", StringSerializer.class.getName());
      try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
        List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
          for (int i = 0; i < per; i++) sent.add(prod.send(new ProducerRecord<>(topic, p, "k" + i, "v" + i)));
        }
        for (java.util.concurrent.Future<?> f : sent) f.get();
      }
      say("produced partitions=" + partitions + " each=" + per);
      ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
      AlterConfigOp op = new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET);
      admin.incrementalAlterConfigs(Map.of(res, List.of(op))).all().get();

      TreeSet<String> counts = new TreeSet<>();
      say("first " + summary(drain(bootstrap, topic, group, partitions * per, counts)) + " counts=" + counts);
      say("starts " + starts(admin, group));

      Map<TopicPartition, Long> moves = new TreeMap<>((a, b) -> Integer.compare(a.partition(), b.partition()));
      for (int p = 0; p < partitions; p++) moves.put(new TopicPartition(topic, p), moveTo);
      admin.alterShareGroupOffsets(group, moves).all().get();
      say("moved to=" + moveTo);
      say("starts " + starts(admin, group));

      counts.clear();
      say("again " + summary(drain(bootstrap, topic, group, -1, counts)) + " counts=" + counts);
      say("starts " + starts(admin, group));

      // Deleted, the group starts over on each partition, as a new share group does.
      admin.deleteShareGroupOffsets(group, java.util.Set.of(topic)).all().get();
      say("deleted");
      counts.clear();
      say("anew " + summary(drain(bootstrap, topic, group, partitions * per, counts)) + " counts=" + counts);
    }
  }
}
