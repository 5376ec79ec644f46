// One scripted workload of Kafka's reference Java client, printed as a transcript of JSON lines
// whose every value is one that two correct brokers must agree on (offsets, partitions, error
// classes, committed offsets and metadata, offsets by time, configs after an alter), so that the
// transcript against sluice can be compared line by line with the one against Apache Kafka.
// Values that legitimately differ between brokers (node ids, member ids, cluster ids) are left
// out or normalised; where the two differ on purpose, docs/kafka.md says why.
//
//   javac -cp 'tests/kafka/.lib/*' -d tests/kafka/.classes tests/kafka/java/src/Oracle.java
//   java -cp 'tests/kafka/.lib/*:tests/kafka/.classes' Oracle BOOTSTRAP PREFIX
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class Oracle {
  static final long T0 = 1_700_000_000_000L;

  static void line(String step, String json) {
    System.out.println("{\"step\":\"" + step + "\"," + json + "}");
    System.out.flush();
  }

  static String q(String s) {
    return s == null ? "null" : "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
  }

  /** The simple name of the cause of a failed future, or "ok". */
  static String outcome(Future<?> f) {
    try {
      f.get();
      return "ok";
    } catch (ExecutionException e) {
      return e.getCause().getClass().getSimpleName();
    } catch (InterruptedException e) {
      throw new RuntimeException(e);
    }
  }

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    String prefix = args.length > 1 ? args[1] : "oracle";
    String topic = prefix + "-t";
    Properties ap = new Properties();
    ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    try (Admin admin = Admin.create(ap)) {
      topics(admin, topic);
      Map<Integer, List<Long>> placed = produce(bootstrap, topic);
      listOffsets(admin, topic);
      consume(bootstrap, topic, placed);
      groups(bootstrap, admin, topic, prefix + "-g");
      configs(admin, topic);
      partitions(admin, topic);
      deletes(admin, topic);
    }
  }

  static void topics(Admin admin, String topic) throws Exception {
    line("create", "\"result\":" + q(outcome(admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all())));
    line("create-again", "\"result\":" + q(outcome(admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all())));
    line("create-invalid", "\"result\":" + q(outcome(admin.createTopics(List.of(new NewTopic("bad/name", 1, (short) 1))).all())));
    TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
    StringBuilder sb = new StringBuilder();
    for (var p : d.partitions()) {
      sb.append(sb.length() == 0 ? "" : ",").append("[").append(p.partition()).append(",")
          .append(p.replicas().size()).append(",").append(p.isr().size()).append("]");
    }
    line("describe", "\"partitions\":[" + sb + "],\"internal\":" + d.isInternal() + ",\"has_id\":" + (d.topicId() != null));
    line("cluster", "\"nodes\":" + admin.describeCluster().nodes().get().size());
  }

  /** 30 records with keys k0..k9 and fixed timestamps; returns the offsets per partition. */
  static Map<Integer, List<Long>> produce(String bootstrap, String topic) throws Exception {
    Properties pp = new Properties();
    pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    // A send to a partition the topic does not have waits this long for metadata that has it.
    pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "3000");
    // The defaults: acks=all and enable.idempotence=true.
    Map<Integer, List<Long>> placed = new TreeMap<>();
    try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
      List<Future<RecordMetadata>> sent = new ArrayList<>();
      for (int i = 0; i < 30; i++) {
        var r = new ProducerRecord<>(topic, null, T0 + i * 1000L, "k" + (i % 10), "v" + i);
        r.headers().add("i", Integer.toString(i).getBytes());
        sent.add(p.send(r));
      }
      for (int i = 0; i < sent.size(); i++) {
        RecordMetadata m = sent.get(i).get();
        placed.computeIfAbsent(m.partition(), k -> new ArrayList<>()).add(m.offset());
        line("produced", "\"i\":" + i + ",\"partition\":" + m.partition() + ",\"offset\":" + m.offset()
            + ",\"timestamp\":" + m.timestamp());
      }
      var bad = p.send(new ProducerRecord<>(topic, 99, "k", "v"));
      line("produce-bad-partition", "\"result\":" + q(outcome(bad)));
    }
    return placed;
  }

  static void listOffsets(Admin admin, String topic) throws Exception {
    for (int part = 0; part < 3; part++) {
      TopicPartition tp = new TopicPartition(topic, part);
      Map<String, OffsetSpec> specs = new TreeMap<>();
      specs.put("earliest", OffsetSpec.earliest());
      specs.put("latest", OffsetSpec.latest());
      specs.put("max-timestamp", OffsetSpec.maxTimestamp());
      specs.put("at-T0+5500", OffsetSpec.forTimestamp(T0 + 5500));
      specs.put("at-T0+25000", OffsetSpec.forTimestamp(T0 + 25000));
      specs.put("after-all", OffsetSpec.forTimestamp(T0 + 99_000));
      for (var e : specs.entrySet()) {
        var r = admin.listOffsets(Map.of(tp, e.getValue())).partitionResult(tp).get();
        line("list-offsets", "\"partition\":" + part + ",\"spec\":" + q(e.getKey()) + ",\"offset\":" + r.offset()
            + ",\"timestamp\":" + r.timestamp());
      }
    }
  }

  static Properties consumerProps(String bootstrap, String group) {
    Properties cp = new Properties();
    cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    if (group != null) {
      cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
      cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
      cp.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, "org.apache.kafka.clients.consumer.RangeAssignor");
    }
    return cp;
  }

  /** Reads every partition from the start without a group (assign), and from an offset inside. */
  static void consume(String bootstrap, String topic, Map<Integer, List<Long>> placed) {
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, null))) {
      List<TopicPartition> tps = new ArrayList<>();
      for (int part = 0; part < 3; part++) tps.add(new TopicPartition(topic, part));
      c.assign(tps);
      c.seekToBeginning(tps);
      Map<String, String> seen = new TreeMap<>();
      long deadline = System.currentTimeMillis() + 30_000;
      while (seen.size() < 30 && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
          Header h = r.headers().lastHeader("i");
          seen.put(r.partition() + "/" + r.offset(),
              r.key() + " " + r.value() + " " + r.timestamp() + " " + (h == null ? "-" : new String(h.value())));
        }
      }
      for (var e : seen.entrySet()) line("consumed", "\"at\":" + q(e.getKey()) + ",\"record\":" + q(e.getValue()));
    }
    // A seek into the middle of what a partition holds (inside a batch: the broker returns the
    // whole batch and the client skips the records before the offset).
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, null))) {
      int part = placed.keySet().iterator().next();
      List<Long> offs = placed.get(part);
      long mid = offs.get(offs.size() / 2);
      TopicPartition tp = new TopicPartition(topic, part);
      c.assign(List.of(tp));
      c.seek(tp, mid);
      long first = -1;
      long deadline = System.currentTimeMillis() + 10_000;
      while (first < 0 && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
          if (first < 0) first = r.offset();
        }
      }
      line("seek-middle", "\"asked\":" + mid + ",\"first\":" + first);
    }
  }

  /** Two members of a classic group split the partitions; commits with metadata round-trip. */
  static void groups(String bootstrap, Admin admin, String topic, String group) throws Exception {
    KafkaConsumer<String, String> a = new KafkaConsumer<>(consumerProps(bootstrap, group));
    KafkaConsumer<String, String> b = new KafkaConsumer<>(consumerProps(bootstrap, group));
    a.subscribe(List.of(topic));
    b.subscribe(List.of(topic));
    long deadline = System.currentTimeMillis() + 60_000;
    while (System.currentTimeMillis() < deadline
        && (a.assignment().size() + b.assignment().size() != 3 || a.assignment().isEmpty() || b.assignment().isEmpty())) {
      a.poll(Duration.ofMillis(100));
      b.poll(Duration.ofMillis(100));
    }
    List<Integer> sizes = new ArrayList<>(List.of(a.assignment().size(), b.assignment().size()));
    sizes.sort(null);
    line("group-assignment", "\"sizes\":" + sizes);
    // Each member commits the partitions it was given (which member gets two of the three
    // depends on the member ids the broker made up): every partition ends up committed.
    for (KafkaConsumer<String, String> m : List.of(a, b)) {
      Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
      for (TopicPartition tp : m.assignment()) commit.put(tp, new OffsetAndMetadata(2, "meta-" + tp.partition()));
      m.commitSync(commit);
    }
    b.close();
    // The one left gets every partition after a rebalance.
    deadline = System.currentTimeMillis() + 60_000;
    while (System.currentTimeMillis() < deadline && a.assignment().size() != 3) a.poll(Duration.ofMillis(100));
    line("group-after-leave", "\"size\":" + a.assignment().size());
    a.close();
    var committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
    for (var e : new TreeMap<>(toNames(committed)).entrySet()) line("group-committed", "\"tp\":" + q(e.getKey()) + ",\"value\":" + q(e.getValue()));
    var groupsListed = admin.listGroups().all().get().stream().filter(g -> g.groupId().equals(group)).count();
    line("group-listed", "\"count\":" + groupsListed);
    var described = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
    line("group-described", "\"state\":" + q(String.valueOf(described.groupState())) + ",\"members\":" + described.members().size());
    line("group-delete", "\"result\":" + q(outcome(admin.deleteConsumerGroups(List.of(group)).all())));
    line("group-delete-again", "\"result\":" + q(outcome(admin.deleteConsumerGroups(List.of(group)).all())));
  }

  static Map<String, String> toNames(Map<TopicPartition, OffsetAndMetadata> m) {
    Map<String, String> out = new TreeMap<>();
    for (var e : m.entrySet()) out.put(e.getKey().toString(), e.getValue().offset() + " " + e.getValue().metadata());
    return out;
  }

  static void configs(Admin admin, String topic) throws Exception {
    ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    var op = new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET);
    line("alter-config", "\"result\":" + q(outcome(admin.incrementalAlterConfigs(Map.of(res, List.of(op))).all())));
    Config c = admin.describeConfigs(List.of(res)).all().get().get(res);
    ConfigEntry e = c.get("retention.ms");
    line("describe-config", "\"name\":\"retention.ms\",\"value\":" + q(e == null ? null : e.value())
        + ",\"source\":" + q(e == null ? null : e.source().toString()));
    var bad = new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET);
    line("alter-config-invalid", "\"result\":" + q(outcome(admin.incrementalAlterConfigs(Map.of(res, List.of(bad))).all())));
  }

  static void partitions(Admin admin, String topic) throws Exception {
    line("add-partitions", "\"result\":" + q(outcome(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all())));
    line("shrink-partitions", "\"result\":" + q(outcome(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all())));
    int n = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size();
    line("partitions-now", "\"count\":" + n);
  }

  static void deletes(Admin admin, String topic) throws Exception {
    line("delete", "\"result\":" + q(outcome(admin.deleteTopics(List.of(topic)).all())));
    line("delete-again", "\"result\":" + q(outcome(admin.deleteTopics(List.of(topic)).all())));
    Collection<String> names = admin.listTopics().names().get();
    line("listed-after-delete", "\"present\":" + names.contains(topic));
  }
}
