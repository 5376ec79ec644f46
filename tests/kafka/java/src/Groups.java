// Consumer groups (classic protocol) and the AdminClient's group and topic calls, driven with
// Kafka's own Java client; cli/tests/kafka_java_groups.rs runs it against `sluice serve` and
// checks what it prints. Every fact is one line: a step name, then `key=value` pairs (values
// hold no spaces). The program itself fails (exit 1, `FAIL: ...` on stderr) only when it cannot
// go on, e.g. a wait that never ends; the test decides what is right.
//
//   javac -cp 'tests/kafka/.lib/*' -d DIR tests/kafka/java/src/Groups.java
//   java -cp 'tests/kafka/.lib/*:DIR' Groups rebalance BOOTSTRAP TOPIC GROUP N
//   java -cp 'tests/kafka/.lib/*:DIR' Groups admin BOOTSTRAP TOPIC GROUP
//
// rebalance: a topic of 6 partitions; consumer A joins alone, then B joins, then A leaves, with
// records produced before each step and commitSync after every poll that returned records.
// admin: createTopics, describeTopics (by name and by id), a group with one member and
// commits with metadata, listConsumerGroups, describeConsumerGroups, listConsumerGroupOffsets,
// deleteConsumerGroups and alterConsumerGroupOffsets refused while the group has a member and
// accepted once it is empty, deleteTopics.
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class Groups {
  /** How long any one wait may take before the program gives up. */
  static final long WAIT_MS_MAX = 30_000;

  static void line(String step, String facts) {
    System.out.println(step + " " + facts);
    System.out.flush();
  }

  static void trace(String s) {
    System.err.println(System.currentTimeMillis() % 100_000 + " " + s);
  }

  static void fail(String why) {
    System.err.println("FAIL: " + why);
    System.exit(1);
  }

  /** Waits until `done` holds, at most WAIT_MS_MAX; fails naming `what` otherwise. */
  static void await(String what, BooleanSupplier done) throws InterruptedException {
    long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
    while (!done.getAsBoolean()) {
      if (System.currentTimeMillis() > deadline) fail("timed out waiting for " + what);
      Thread.sleep(50);
    }
  }

  /** The simple class name of the cause of a failed future, or "ok". */
  static String outcome(Future<?> f) throws InterruptedException {
    try {
      f.get();
      return "ok";
    } catch (ExecutionException e) {
      return e.getCause().getClass().getSimpleName();
    }
  }

  static String ints(Collection<Integer> xs) {
    return xs.isEmpty() ? "-" : new TreeSet<>(xs).stream().map(String::valueOf).collect(Collectors.joining(","));
  }

  static Set<Integer> parts(Collection<TopicPartition> tps) {
    return tps.stream().map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new));
  }

  static Admin admin(String bootstrap) {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    return Admin.create(p);
  }

  /** The default producer (idempotent) with acks=all. */
  static KafkaProducer<String, String> producer(String bootstrap) {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    return new KafkaProducer<>(p);
  }

  static Properties consumerProps(String bootstrap, String group, String clientId) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    p.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    // Kafka's default is 3 s; a shorter interval makes a member learn of a rebalance sooner.
    p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    return p;
  }

  /** Sends `count` records, record i to partition i % partitions; returns "partition/offset" -> value. */
  static Map<String, String> produce(KafkaProducer<String, String> p, String topic, int partitions, String tag, int count)
      throws Exception {
    List<Future<RecordMetadata>> sent = new ArrayList<>();
    List<String> values = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      String v = tag + "-" + i;
      values.add(v);
      sent.add(p.send(new ProducerRecord<>(topic, i % partitions, "k" + i, v)));
    }
    Map<String, String> at = new TreeMap<>();
    for (int i = 0; i < count; i++) {
      RecordMetadata m = sent.get(i).get();
      at.put(m.partition() + "/" + m.offset(), values.get(i));
    }
    line("produced", "tag=" + tag + " count=" + at.size());
    return at;
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 4) fail("usage: Groups rebalance|admin BOOTSTRAP TOPIC GROUP [N]");
    switch (args[0]) {
      case "rebalance" -> Rebalance.run(args[1], args[2], args[3], args.length > 4 ? Integer.parseInt(args[4]) : 600);
      case "admin" -> AdminSteps.run(args[1], args[2], args[3]);
      default -> fail("unknown mode " + args[0]);
    }
    System.exit(0);
  }

  /** One group member polling on its own thread, committing with commitSync after each poll. */
  static final class Member implements Runnable {
    final String name;
    final Properties props;
    final String topic;
    volatile boolean stop;
    volatile Set<Integer> assignment = Set.of();
    volatile int generation = -1;
    /** "partition/offset" -> value of every record this member was given. */
    final Map<String, String> seen = new ConcurrentHashMap<>();
    volatile int delivered;
    volatile int commitFailures;
    volatile Throwable error;
    final Thread thread = new Thread(this);

    Member(String name, String bootstrap, String group, String topic) {
      this.name = name;
      this.props = consumerProps(bootstrap, group, "groups-" + name);
      this.topic = topic;
    }

    public void run() {
      try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props)) {
        c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
          public void onPartitionsRevoked(Collection<TopicPartition> tps) {
            trace(name + " revoked " + ints(parts(tps)));
          }

          public void onPartitionsAssigned(Collection<TopicPartition> tps) {
            // c.assignment() is the whole assignment under eager and cooperative protocols alike.
            assignment = parts(c.assignment());
            generation = c.groupMetadata().generationId();
            trace(name + " assigned " + ints(parts(tps)) + " now " + ints(assignment) + " generation " + generation);
          }
        });
        while (!stop) {
          ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(100));
          for (ConsumerRecord<String, String> r : rs) {
            seen.put(r.partition() + "/" + r.offset(), r.value());
            delivered++;
          }
          if (!rs.isEmpty()) {
            try {
              c.commitSync();
            } catch (RuntimeException e) {
              // A rebalance between the poll and the commit: the next owner reads these again.
              commitFailures++;
              trace(name + " commit failed: " + e);
            }
          }
        }
      } catch (Throwable e) {
        error = e;
        trace(name + " failed: " + e);
      }
      trace(name + " closed");
    }
  }

  static final class Rebalance {
    static final int PARTITIONS = 6;

    static void run(String bootstrap, String topic, String group, int n) throws Exception {
      try (Admin admin = admin(bootstrap); KafkaProducer<String, String> p = producer(bootstrap)) {
        admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get();
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(topic, i));
        Map<String, String> produced = new TreeMap<>(produce(p, topic, PARTITIONS, "one", n / 3));

        Member a = new Member("a", bootstrap, group, topic);
        a.thread.start();
        await("A to own all partitions", () -> a.assignment.size() == PARTITIONS);
        awaitCommittedAtEnd(admin, group, tps);
        line("phase1", "a=" + ints(a.assignment) + " generation=" + a.generation);

        Member b = new Member("b", bootstrap, group, topic);
        b.thread.start();
        await("A and B to split the partitions", () -> a.generation == b.generation
            && a.assignment.size() + b.assignment.size() == PARTITIONS
            && !a.assignment.isEmpty() && !b.assignment.isEmpty());
        Set<Integer> ownedA = a.assignment;
        Set<Integer> ownedB = b.assignment;
        line("phase2", "a=" + ints(ownedA) + " b=" + ints(ownedB) + " generation=" + b.generation);
        Map<String, String> two = produce(p, topic, PARTITIONS, "two", n / 3);
        produced.putAll(two);
        awaitCommittedAtEnd(admin, group, tps);
        line("phase2-delivered", "a=" + countIn(two, a.seen) + " b=" + countIn(two, b.seen)
            + " a-foreign=" + foreign(a.seen, ownedA) + " b-foreign=" + foreign(b.seen, ownedB)
            + " same-assignment=" + (a.assignment.equals(ownedA) && b.assignment.equals(ownedB)));

        a.stop = true;
        a.thread.join(WAIT_MS_MAX);
        if (a.thread.isAlive()) fail("A did not close");
        await("B to own all partitions", () -> b.assignment.size() == PARTITIONS);
        line("phase3", "b=" + ints(b.assignment) + " generation=" + b.generation);
        Map<String, String> three = produce(p, topic, PARTITIONS, "three", n - 2 * (n / 3));
        produced.putAll(three);
        awaitCommittedAtEnd(admin, group, tps);
        line("phase3-delivered", "b=" + countIn(three, b.seen) + " a=" + countIn(three, a.seen));
        b.stop = true;
        b.thread.join(WAIT_MS_MAX);
        if (b.thread.isAlive()) fail("B did not close");

        Map<String, String> seen = new TreeMap<>(a.seen);
        seen.putAll(b.seen);
        int wrong = 0;
        int missing = 0;
        for (var e : produced.entrySet()) {
          String got = seen.get(e.getKey());
          if (got == null) missing++;
          else if (!got.equals(e.getValue())) wrong++;
        }
        line("consumed", "produced=" + produced.size() + " distinct=" + seen.size() + " missing=" + missing
            + " wrong=" + wrong + " delivered=" + (a.delivered + b.delivered)
            + " commit-failures=" + (a.commitFailures + b.commitFailures)
            + " errors=" + (a.error == null && b.error == null ? "none" : a.error + "|" + b.error));
        var committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        var ends = ends(admin, tps);
        for (TopicPartition tp : tps) {
          OffsetAndMetadata c = committed.get(tp);
          line("committed", "partition=" + tp.partition() + " offset=" + (c == null ? -1 : c.offset())
              + " end=" + ends.get(tp));
        }
      }
    }

    static int countIn(Map<String, String> wanted, Map<String, String> seen) {
      return (int) wanted.keySet().stream().filter(seen::containsKey).count();
    }

    /** How many of `seen` were consumed from a partition outside `owned` since the split. */
    static int foreign(Map<String, String> seen, Set<Integer> owned) {
      return (int) seen.entrySet().stream()
          .filter(e -> e.getValue().startsWith("two-"))
          .filter(e -> !owned.contains(Integer.parseInt(e.getKey().split("/")[0])))
          .count();
    }
  }

  static Map<TopicPartition, Long> ends(Admin admin, List<TopicPartition> tps) throws Exception {
    Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
    for (TopicPartition tp : tps) specs.put(tp, OffsetSpec.latest());
    Map<TopicPartition, Long> out = new HashMap<>();
    for (var e : admin.listOffsets(specs).all().get().entrySet()) out.put(e.getKey(), e.getValue().offset());
    return out;
  }

  /** Waits until the group's committed offset of every partition is that partition's end. */
  static void awaitCommittedAtEnd(Admin admin, String group, List<TopicPartition> tps) throws Exception {
    long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
    while (true) {
      var ends = ends(admin, tps);
      var committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
      boolean all = true;
      for (TopicPartition tp : tps) {
        OffsetAndMetadata c = committed.get(tp);
        if (c == null || c.offset() != ends.get(tp)) all = false;
      }
      if (all) return;
      if (System.currentTimeMillis() > deadline) fail("committed " + committed + " never reached ends " + ends);
      Thread.sleep(100);
    }
  }

  // listConsumerGroups is deprecated in 4.x (for listGroups) and still what tools call.
  @SuppressWarnings("removal")
  static final class AdminSteps {
    static final int PARTITIONS = 3;
    static final int RECORDS = 30;

    static void run(String bootstrap, String topic, String group) throws Exception {
      try (Admin admin = admin(bootstrap)) {
        line("create", "result=" + outcome(admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all()));
        line("create-again", "result=" + outcome(admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all()));
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        List<Integer> ids = new ArrayList<>();
        for (var pi : d.partitions()) ids.add(pi.partition());
        line("describe", "name=" + d.name() + " partitions=" + ints(ids) + " leader=" + d.partitions().get(0).leader().id()
            + " internal=" + d.isInternal() + " topic-id=" + d.topicId());
        var byId = admin.describeTopics(TopicCollection.ofTopicIds(List.of(d.topicId()))).allTopicIds().get();
        line("describe-by-id", "name=" + byId.get(d.topicId()).name() + " partitions=" + byId.get(d.topicId()).partitions().size());

        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(topic, i));
        try (KafkaProducer<String, String> p = producer(bootstrap)) {
          produce(p, topic, PARTITIONS, "admin", RECORDS);
        }
        KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group, "groups-admin"));
        c.subscribe(List.of(topic));
        int got = 0;
        long deadline = System.currentTimeMillis() + WAIT_MS_MAX;
        while (got < RECORDS && System.currentTimeMillis() < deadline) got += c.poll(Duration.ofMillis(100)).count();
        Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
        for (TopicPartition tp : c.assignment()) commit.put(tp, new OffsetAndMetadata(c.position(tp), "meta-" + tp.partition()));
        c.commitSync(commit);
        line("consumed", "count=" + got + " assigned=" + ints(parts(c.assignment())));

        groups(admin, group, "member");
        offsets(admin, group, "offsets");
        line("delete-group-member", "result=" + outcome(admin.deleteConsumerGroups(List.of(group)).all()));
        var reset = Map.of(tps.get(0), new OffsetAndMetadata(1, "reset"));
        line("alter-offsets-member", "result=" + outcome(admin.alterConsumerGroupOffsets(group, reset).all()));
        offsets(admin, group, "offsets-unaltered");

        c.close();
        groups(admin, group, "empty");
        line("alter-offsets-empty", "result=" + outcome(admin.alterConsumerGroupOffsets(group, reset).all()));
        offsets(admin, group, "offsets-altered");
        line("delete-group-empty", "result=" + outcome(admin.deleteConsumerGroups(List.of(group)).all()));
        boolean listed = admin.listConsumerGroups().all().get().stream().anyMatch(g -> g.groupId().equals(group));
        line("listed-after-delete", "present=" + listed);
        offsets(admin, group, "offsets-after-delete");
        line("delete-group-again", "result=" + outcome(admin.deleteConsumerGroups(List.of(group)).all()));

        line("delete-topic", "result=" + outcome(admin.deleteTopics(List.of(topic)).all()));
        line("describe-deleted", "result=" + outcome(admin.describeTopics(List.of(topic)).allTopicNames()));
        line("topic-listed-after-delete", "present=" + admin.listTopics().names().get().contains(topic));
      }
    }

    /** listConsumerGroups and describeConsumerGroups of `group`, printed under `step`. */
    static void groups(Admin admin, String group, String step) throws Exception {
      var listing = admin.listConsumerGroups().all().get().stream().filter(g -> g.groupId().equals(group)).toList();
      line(step + "-listed", "count=" + listing.size() + " state="
          + (listing.isEmpty() ? "-" : listing.get(0).groupState().map(String::valueOf).orElse("-"))
          + " type=" + (listing.isEmpty() ? "-" : listing.get(0).type().map(String::valueOf).orElse("-"))
          + " simple=" + (listing.isEmpty() ? "-" : listing.get(0).isSimpleConsumerGroup()));
      ConsumerGroupDescription g = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
      List<String> members = new ArrayList<>();
      for (MemberDescription m : g.members()) {
        members.add(m.clientId() + "@" + m.host() + ":" + ints(parts(m.assignment().topicPartitions())));
      }
      line(step + "-described", "state=" + g.groupState() + " type=" + g.type() + " members=" + g.members().size()
          + " assignor=" + (g.partitionAssignor().isEmpty() ? "-" : g.partitionAssignor())
          + " coordinator=" + g.coordinator().id() + " simple=" + g.isSimpleConsumerGroup()
          + " assignment=" + (members.isEmpty() ? "-" : String.join(";", members)));
    }

    static void offsets(Admin admin, String group, String step) throws Exception {
      var committed = new TreeMap<String, OffsetAndMetadata>();
      for (var e : admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().entrySet()) {
        committed.put(e.getKey().toString(), e.getValue());
      }
      List<String> out = new ArrayList<>();
      for (var e : committed.entrySet()) {
        OffsetAndMetadata o = e.getValue();
        out.add(e.getKey() + ":" + (o == null ? "null" : o.offset() + ":" + (o.metadata().isEmpty() ? "-" : o.metadata())));
      }
      line(step, "count=" + committed.size() + " offsets=" + (out.isEmpty() ? "-" : String.join(",", out)));
    }
  }
}
