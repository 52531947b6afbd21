using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Tests;

/// <summary>
/// The gateway's batch sequencer on its own: replies and pushes arriving in any order are applied once each, in the
/// order the grain sealed them; stale epochs and duplicates are dropped; a hand-off stops what follows.
/// </summary>
[Trait("Category", "Fast")]
public sealed class BatchSequencerTests
{
    private static TransportBatch Batch(long sequence) => new() { Sequence = sequence };

    private static List<long> Offer(BatchSequencer sequencer, IEnumerable<long> arrivals, int epoch = 0, long stopAfter = long.MaxValue)
    {
        var applied = new List<long>();
        foreach (var sequence in arrivals)
        {
            sequencer.Offer(Batch(sequence), epoch, applied, (list, batch) =>
            {
                list.Add(batch.Sequence);
                return batch.Sequence != stopAfter;
            });
        }

        return applied;
    }

    private static IEnumerable<long[]> Permutations(long[] items)
    {
        if (items.Length <= 1)
        {
            yield return items;
            yield break;
        }

        for (var i = 0; i < items.Length; i++)
        {
            var rest = items.Where((_, j) => j != i).ToArray();
            foreach (var tail in Permutations(rest))
            {
                yield return [items[i], .. tail];
            }
        }
    }

    [Fact]
    public void Every_arrival_order_of_five_batches_is_applied_in_sequence_once_each()
    {
        // A callback's reply and the observer pushes made around it, as they may arrive across silos: 120 orders.
        var orders = Permutations([1, 2, 3, 4, 5]).ToList();
        Assert.Equal(120, orders.Count);
        foreach (var order in orders)
        {
            var sequencer = new BatchSequencer();
            Assert.Equal([1, 2, 3, 4, 5], Offer(sequencer, order));
            Assert.Equal(5, sequencer.Applied);
            Assert.Equal(0, sequencer.Held);
        }
    }

    [Fact]
    public void A_reply_that_overtakes_a_push_waits_for_it_and_the_push_releases_both()
    {
        var sequencer = new BatchSequencer();
        Assert.Empty(Offer(sequencer, [2]));
        Assert.Equal(1, sequencer.Held);
        Assert.Equal(0, sequencer.Applied);

        Assert.Equal([1, 2], Offer(sequencer, [1]));
        Assert.Equal(2, sequencer.Applied);
    }

    [Fact]
    public void Duplicates_are_dropped_whether_already_applied_or_still_held()
    {
        var sequencer = new BatchSequencer();
        Assert.Equal([1], Offer(sequencer, [1, 1, 3, 4, 3, 1]));
        Assert.Equal(2, sequencer.Held);
        Assert.Equal([2, 3, 4], Offer(sequencer, [2, 2, 4]));
        Assert.Equal(0, sequencer.Held);
    }

    [Fact]
    public void A_gap_holds_everything_after_it_until_it_is_filled()
    {
        var sequencer = new BatchSequencer();
        Assert.Equal([1], Offer(sequencer, [1, 3, 4, 5]));
        Assert.Equal(3, sequencer.Held);
        Assert.Equal([2, 3, 4, 5], Offer(sequencer, [2]));
    }

    [Fact]
    public void After_a_hand_off_the_old_protocols_batches_are_dropped_and_the_new_one_counts_from_one()
    {
        var sequencer = new BatchSequencer();

        // Batch 2 hands the connection over: 3 (held) must not apply after it.
        Assert.Equal([1], Offer(sequencer, [1, 3]));
        Assert.Equal([2], Offer(sequencer, [2], stopAfter: 2));
        Assert.Equal(1, sequencer.Held);

        sequencer.NextEpoch();
        Assert.Equal(0, sequencer.Held);
        Assert.Empty(Offer(sequencer, [3, 4], epoch: 0));
        Assert.Equal([1, 2], Offer(sequencer, [2, 1], epoch: 1));
        Assert.Equal(1, sequencer.Epoch);
    }

    [Fact]
    public void A_batch_from_a_grain_that_is_not_the_connections_protocol_is_dropped()
    {
        // The connection passes epoch -1 for a push from any other grain.
        var sequencer = new BatchSequencer();
        Assert.Empty(Offer(sequencer, [1], epoch: -1));
        Assert.Equal([1], Offer(sequencer, [1]));
    }
}
