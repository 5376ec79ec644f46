// One scripted share-group (KIP-932) workload of Kafka's own Java client, run against Apache
// Kafka's broker and against sluice: the two transcripts must be equal line for line
// (cli/tests/kafka_java_share.rs). Every line is a step with the facts it checked, never a
// timing or an id, so the transcript is deterministic.
//
//   java -cp 'tests/kafka/.lib/*:CLASSES' ShareOracle BOOTSTRAP PREFIX
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ListShareGroupOffsetsSpec;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ShareGroupDescription;
import org.apache.kafka.clients.admin.SharePartitionOffsetInfo;
import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicIdPartition;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class ShareOracle {
  static String bootstrap;

  static void say(String line) {
    System.out.println(line);
    System.out.flush();
  }

  static KafkaShareConsumer<String, String> consumer(String group, boolean explicit) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("group.id", group);
    p.put("key.deserializer", StringDeserializer.class.getName());
    p.put("value.deserializer", StringDeserializer.class.getName());
    p.put("share.acknowledgement.mode", explicit ? "explicit" : "implicit");
    return new KafkaShareConsumer<>(p);
  }

  /** Polls until `n` records arrived or `seconds` passed. */
  static List<ConsumerRecord<String, String>> pollFor(
      KafkaShareConsumer<String, String> c, int n, int seconds, boolean explicitAccept) {
    List<ConsumerRecord<String, String>> got = new ArrayList<>();
    long deadline = System.currentTimeMillis() + seconds * 1000L;
    while (got.size() < n && System.currentTimeMillis() < deadline) {
      for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
        got.add(r);
        if (explicitAccept) c.acknowledge(r, AcknowledgeType.ACCEPT);
      }
    }
    return got;
  }

  static String offsets(List<ConsumerRecord<String, String>> rs) {
    return rs.stream().map(r -> Long.toString(r.offset())).sorted((a, b) -> Long.compare(Long.parseLong(a), Long.parseLong(b))).collect(Collectors.joining(","));
  }

  static String counts(List<ConsumerRecord<String, String>> rs) {
    return new TreeSet<>(rs.stream().map(r -> r.deliveryCount().map(Object::toString).orElse("none")).collect(Collectors.toList())).toString().replace(" ", "");
  }

  static String committed(Map<TopicIdPartition, Optional<KafkaException>> m) {
    long bad = m.values().stream().filter(Optional::isPresent).count();
    return "partitions=" + m.size() + " errors=" + bad;
  }

  static void produce(String topic, int from, int n) throws Exception {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("key.serializer", StringSerializer.class.getName());
    p.put("value.serializer", StringSerializer.class.getName());
    try (KafkaProducer<String, String> prod = new KafkaProducer<>(p)) {
      for (int i = from; i < from + n; i++) prod.send(new ProducerRecord<>(topic, "k" + i, "v" + i)).get();
    }
    say("produced from=" + from + " n=" + n);
  }

  /** Two members of one group consume `n` records at once, each slowed to 2 ms a record. */
  static void pair(String topic, String group, int n) throws Exception {
    Properties ap = new Properties();
    ap.put("bootstrap.servers", bootstrap);
    try (Admin admin = Admin.create(ap)) {
      admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
      ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
      AlterConfigOp op = new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET);
      admin.incrementalAlterConfigs(Map.of(res, List.of(op))).all().get();
    }
    produce(topic, 0, n);
    List<List<Long>> seen = List.of(new ArrayList<>(), new ArrayList<>());
    java.util.concurrent.atomic.AtomicInteger total = new java.util.concurrent.atomic.AtomicInteger();
    List<Thread> threads = new ArrayList<>();
    for (int k = 0; k < 2; k++) {
      List<Long> mine = seen.get(k);
      Thread t = new Thread(() -> {
        try (KafkaShareConsumer<String, String> c = consumer(group, false)) {
          c.subscribe(List.of(topic));
          long deadline = System.currentTimeMillis() + 60_000;
          while (total.get() < n && System.currentTimeMillis() < deadline) {
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
              mine.add(r.offset());
              total.incrementAndGet();
              Thread.sleep(2);
            }
          }
          c.commitSync();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      });
      t.start();
      threads.add(t);
    }
    for (Thread t : threads) t.join();
    TreeSet<Long> distinct = new TreeSet<>(seen.get(0));
    distinct.addAll(seen.get(1));
    say("pair a=" + seen.get(0).size() + " b=" + seen.get(1).size() + " total=" + total.get()
        + " distinct=" + distinct.size() + " first=" + (distinct.isEmpty() ? -1 : distinct.first())
        + " last=" + (distinct.isEmpty() ? -1 : distinct.last()));
  }

  public static void main(String[] args) throws Exception {
    bootstrap = args[0];
    if (args.length > 3 && args[2].equals("pair")) {
      pair(args[1] + "-t", args[1] + "-g", Integer.parseInt(args[3]));
      return;
    }
    String topic = args[1] + "-t";
    String group = args[1] + "-g";
    Properties ap = new Properties();
    ap.put("bootstrap.servers", bootstrap);
    try (Admin admin = Admin.create(ap)) {
      admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
      say("created topic partitions=1");
      ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
      AlterConfigOp op = new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET);
      admin.incrementalAlterConfigs(Map.of(res, List.of(op))).all().get();
      say("group-config share.auto.offset.reset=earliest");
      try {
        AlterConfigOp bad = new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "sideways"), AlterConfigOp.OpType.SET);
        admin.incrementalAlterConfigs(Map.of(res, List.of(bad))).all().get();
        say("group-config-bad accepted");
      } catch (Exception e) {
        say("group-config-bad refused=" + e.getCause().getClass().getSimpleName());
      }

      produce(topic, 0, 20);
      // Explicit acknowledgement: accept 0-9, release 10-14, reject 15-19.
      try (KafkaShareConsumer<String, String> c = consumer(group, true)) {
        c.subscribe(List.of(topic));
        List<ConsumerRecord<String, String>> got = pollFor(c, 20, 30, false);
        say("acquired offsets=" + offsets(got) + " counts=" + counts(got));
        for (ConsumerRecord<String, String> r : got) {
          AcknowledgeType t = r.offset() < 10 ? AcknowledgeType.ACCEPT : r.offset() < 15 ? AcknowledgeType.RELEASE : AcknowledgeType.REJECT;
          c.acknowledge(r, t);
        }
        say("committed " + committed(c.commitSync()));
        List<ConsumerRecord<String, String>> again = pollFor(c, 5, 20, true);
        say("redelivered offsets=" + offsets(again) + " counts=" + counts(again));
        say("committed " + committed(c.commitSync()));
        List<ConsumerRecord<String, String>> none = pollFor(c, 1, 2, true);
        say("after offsets=" + offsets(none));
      }
      say("closed");

      // A member that closes without acknowledging hands its records to the next one.
      produce(topic, 20, 10);
      try (KafkaShareConsumer<String, String> c2 = consumer(group, true)) {
        c2.subscribe(List.of(topic));
        List<ConsumerRecord<String, String>> got = pollFor(c2, 10, 30, false);
        say("c2 acquired offsets=" + offsets(got) + " counts=" + counts(got));
      }
      try (KafkaShareConsumer<String, String> c3 = consumer(group, false)) {
        c3.subscribe(List.of(topic));
        List<ConsumerRecord<String, String>> got = pollFor(c3, 10, 60, false);
        say("c3 acquired offsets=" + offsets(got) + " counts=" + counts(got));
        c3.commitSync();
      }

      ShareGroupDescription d = admin.describeShareGroups(List.of(group)).all().get().get(group);
      say("describe state=" + d.groupState() + " members=" + d.members().size());
      Map<TopicPartition, SharePartitionOffsetInfo> offs = admin.listShareGroupOffsets(Map.of(group, new ListShareGroupOffsetsSpec())).partitionsToOffsetInfo(group).get();
      for (Map.Entry<TopicPartition, SharePartitionOffsetInfo> e : offs.entrySet()) {
        say("start-offset partition=" + e.getKey().partition() + " offset=" + e.getValue().startOffset());
      }
      // A poison record, released at every delivery, is given up after the delivery limit.
      produce(topic, 30, 1);
      try (KafkaShareConsumer<String, String> c4 = consumer(group, true)) {
        c4.subscribe(List.of(topic));
        List<String> deliveries = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 30_000;
        long quietSince = System.currentTimeMillis();
        while (System.currentTimeMillis() < deadline && System.currentTimeMillis() - quietSince < 3_000) {
          for (ConsumerRecord<String, String> r : c4.poll(Duration.ofMillis(200))) {
            deliveries.add(r.deliveryCount().map(Object::toString).orElse("none"));
            c4.acknowledge(r, AcknowledgeType.RELEASE);
            quietSince = System.currentTimeMillis();
          }
          c4.commitSync();
        }
        say("poison deliveries=" + String.join(",", deliveries));
      }

      try {
        ShareGroupDescription u = admin.describeShareGroups(List.of(args[1] + "-nobody")).all().get().get(args[1] + "-nobody");
        say("describe-unknown state=" + u.groupState());
      } catch (Exception e) {
        say("describe-unknown refused=" + e.getCause().getClass().getSimpleName());
      }
      admin.deleteShareGroupOffsets(group, Set.of(topic)).all().get();
      say("deleted offsets");
      Map<TopicPartition, SharePartitionOffsetInfo> after = admin.listShareGroupOffsets(Map.of(group, new ListShareGroupOffsetsSpec())).partitionsToOffsetInfo(group).get();
      say("after-delete partitions=" + after.size());

      // The start offset moved back: a new consumer gets what follows it, as first deliveries.
      admin.alterShareGroupOffsets(group, Map.of(new TopicPartition(topic, 0), 25L)).all().get();
      say("altered start-offset=25");
      try (KafkaShareConsumer<String, String> c5 = consumer(group, false)) {
        c5.subscribe(List.of(topic));
        List<ConsumerRecord<String, String>> got = pollFor(c5, 6, 30, false);
        say("after-alter offsets=" + offsets(got) + " counts=" + counts(got));
        c5.commitSync();
      }
    }
  }
}
