using OrleansProtocol.Gateway.Groups;

namespace OrleansProtocol.Tests;

/// <summary>
/// The group gateway's ordering on its own: each sending silo's numbered messages are delivered once, in number order,
/// whatever order they arrive in; a number that never comes is given up after the gap; one that comes after that is late.
/// </summary>
[Trait("Category", "Fast")]
public sealed class GroupOrderTests
{
    [Fact]
    public void Messages_arriving_in_any_order_are_delivered_once_in_their_senders_numbering()
    {
        var delivered = new List<(string Source, long Number)>();
        var order = new GroupOrder<string, (string, long)>(delivered.Add);
        var random = new Random(7);
        var arrivals = new[] { "a", "b" }.SelectMany(s => Enumerable.Range(1, 200).Select(n => (s, (long)n))).OrderBy(_ => random.Next()).ToList();
        foreach (var (source, number) in arrivals)
        {
            Assert.True(order.Arrive(source, number, (source, number), now: 0));
        }

        foreach (var source in new[] { "a", "b" })
        {
            Assert.Equal(Enumerable.Range(1, 200).Select(n => (long)n), delivered.Where(d => d.Source == source).Select(d => d.Number));
        }

        Assert.Equal(0, order.Waiting);
        Assert.False(order.Arrive("a", 200, ("a", 200), now: 0)); // a duplicate is not delivered twice
    }

    [Fact]
    public void A_missing_number_holds_what_follows_until_the_gap_then_is_given_up_and_late_if_it_comes()
    {
        var delivered = new List<long>();
        var order = new GroupOrder<string, long>(delivered.Add);
        order.Arrive("a", 1, 1, now: 0);
        order.Arrive("a", 3, 3, now: 10);
        order.Arrive("a", 4, 4, now: 12);
        Assert.Equal([1], delivered);
        Assert.Equal(2, order.Waiting);

        Assert.Equal(0, order.SkipGaps(now: 109, gap: 100)); // 3 has waited 99: not yet
        Assert.Equal(1, order.SkipGaps(now: 110, gap: 100));
        Assert.Equal([1, 3, 4], delivered);
        Assert.Equal(0, order.Waiting);

        Assert.False(order.Arrive("a", 2, 2, now: 111)); // given up: delivering it now would break the order
        Assert.True(order.Arrive("a", 5, 5, now: 112));
        Assert.Equal([1, 3, 4, 5], delivered);
    }

    [Fact]
    public void A_dead_sources_waiting_messages_are_delivered_and_its_numbering_forgotten()
    {
        var delivered = new List<long>();
        var order = new GroupOrder<string, long>(delivered.Add);
        order.Arrive("dead", 2, 2, now: 0);
        order.Arrive("live", 1, 1, now: 0);
        Assert.Equal(2, order.Sources);

        order.Forget(s => s == "dead");
        Assert.Equal([1, 2], delivered);
        Assert.Equal(1, order.Sources);
        Assert.Equal(0, order.Waiting);
    }
}
