using OrleansProtocol.Gateway.Connections;

namespace OrleansProtocol.Tests;

/// <summary>The pump's and the writer's wake-up: no lost and no spurious wake-ups, inline or not, reused per wait.</summary>
[Trait("Category", "Fast")]
public class AsyncSignalTests
{
    [Fact]
    public async Task A_set_before_the_wait_completes_it_at_once_and_only_once()
    {
        var signal = new AsyncSignal();
        signal.Set();
        signal.Set();
        Assert.True(signal.WaitAsync().IsCompleted);

        var second = signal.WaitAsync();
        Assert.False(second.IsCompleted);
        signal.Set();
        await second.AsTask().WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_waiter_sees_every_increment_a_racing_setter_makes_across_100000_waits(bool inline)
    {
        // The setter publishes a counter then sets; the waiter waits only while it has not seen the target. A lost
        // wake-up leaves the waiter waiting for ever (the timeout fails the test).
        const int target = 100_000;
        var signal = new AsyncSignal(inline);
        long published = 0;
        var waits = 0;
        var waiter = Task.Run(async () =>
        {
            while (Volatile.Read(ref published) < target)
            {
                await signal.WaitAsync();
                waits++;
            }
        });
        var setter = Task.Run(() =>
        {
            for (var i = 0; i < target; i++)
            {
                Interlocked.Increment(ref published);
                signal.Set();
            }
        });

        await Task.WhenAll(waiter, setter).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.InRange(waits, 0, target);
    }
}
