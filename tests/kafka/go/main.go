// Command smoke produces N records to a topic with franz-go, an independent Kafka protocol
// implementation, then consumes them back in a consumer group and checks the count. The
// bootstrap address comes from -bootstrap or KAFKA_BOOTSTRAP, so the same program runs against
// Apache Kafka and against sluice. -assign consumes partition 0 directly (no group) and checks
// every key and value in order; -no-idempotence produces without idempotence (no
// InitProducerId). In group mode every record consumed must be one this run produced (values
// carry -run), so a second run in the same group shows it resumed from the group's commits;
// -partitions sets the partitions of the topic it creates.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	bootstrap := flag.String("bootstrap", os.Getenv("KAFKA_BOOTSTRAP"), "host:port[,host:port] (default $KAFKA_BOOTSTRAP)")
	topic := flag.String("topic", "smoke-franz-go", "topic")
	n := flag.Int("n", 10, "records to produce and consume")
	group := flag.String("group", "", "consumer group (default TOPIC-group)")
	timeout := flag.Duration("timeout", 30*time.Second, "overall deadline")
	assign := flag.Bool("assign", false, "consume partition 0 from the start without a group, checking each record")
	noIdem := flag.Bool("no-idempotence", false, "produce without idempotence (no InitProducerId)")
	partitions := flag.Int("partitions", 1, "partitions of the topic created")
	runLabel := flag.String("run", "r0", "label of this run, carried in every value")
	flag.Parse()
	if *bootstrap == "" {
		fail("no bootstrap address: pass -bootstrap or set KAFKA_BOOTSTRAP")
	}
	if *group == "" {
		*group = *topic + "-group"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	seeds := strings.Split(*bootstrap, ",")

	admin, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		fail("client: %v", err)
	}
	adm := kadm.NewClient(admin)
	resp, err := adm.CreateTopics(ctx, int32(*partitions), 1, nil, *topic)
	if err != nil {
		fail("create topic: %v", err)
	}
	for _, r := range resp {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			fail("create topic %s: %v", r.Topic, r.Err)
		}
	}
	admin.Close()

	popts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(*topic)}
	if *noIdem {
		popts = append(popts, kgo.DisableIdempotentWrite())
	}
	prod, err := kgo.NewClient(popts...)
	if err != nil {
		fail("producer: %v", err)
	}
	for i := 0; i < *n; i++ {
		rec := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(value(*runLabel, i))}
		if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
			fail("produce %d: %v", i, err)
		}
	}
	prod.Close()

	copts := []kgo.Opt{kgo.SeedBrokers(seeds...)}
	if *assign {
		copts = append(copts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			*topic: {0: kgo.NewOffset().AtStart()},
		}))
	} else {
		copts = append(copts,
			kgo.ConsumeTopics(*topic),
			kgo.ConsumerGroup(*group),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		)
	}
	cons, err := kgo.NewClient(copts...)
	if err != nil {
		fail("consumer: %v", err)
	}
	got := 0
	for got < *n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		for _, e := range fs.Errors() {
			fail("fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !*assign && !strings.HasPrefix(string(r.Value), *runLabel+" ") {
				fail("record %s/%d@%d from another run: %q (not resumed from the group's commit)", r.Topic, r.Partition, r.Offset, r.Value)
			}
			if *assign {
				want := value(*runLabel, got)
				if r.Offset != int64(got) || string(r.Value) != want || string(r.Key) != fmt.Sprintf("k%d", got) {
					fail("record %d: offset %d key %q value %q", got, r.Offset, r.Key, r.Value)
				}
			}
			got++
		})
	}
	if !*assign {
		if err := cons.CommitUncommittedOffsets(context.Background()); err != nil {
			fail("commit: %v", err)
		}
	}
	cons.Close()
	fmt.Printf("franz-go: produced %d consumed %d\n", *n, got)
	if got != *n {
		os.Exit(1)
	}
}

func value(run string, i int) string {
	return fmt.Sprintf("%s franz-go %d", run, i)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "smoke: "+format+"\n", args...)
	os.Exit(1)
}
