using System.Diagnostics;
using Microsoft.Extensions.Time.Testing;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// Moving a <see cref="FakeTimeProvider"/> under a live gateway. A jump of an hour in one call fires the heartbeat's
/// timer thousands of times while the connections' own work (a reply being counted as sent) has had no moment to run;
/// stepping, with a yield between steps, lets time pass as it would.
/// </summary>
public static class FakeClock
{
    /// <summary>Moves <paramref name="time"/> by <paramref name="by"/> in up to 60 steps, yielding between them.</summary>
    public static async Task AdvanceAsync(this FakeTimeProvider time, TimeSpan by)
    {
        var steps = (int)Math.Clamp(Math.Ceiling(by / TimeSpan.FromSeconds(1)), 1, 60);
        for (var i = 0; i < steps; i++)
        {
            time.Advance(by / steps);
            await Task.Delay(1);
        }
    }

    /// <summary>
    /// Moves the clock by <paramref name="by"/>, then waits for <paramref name="condition"/> (the limit's effect),
    /// nudging the clock a millisecond now and then in case the last heartbeat ran before the final step.
    /// </summary>
    public static async Task AdvanceUntilAsync(this FakeTimeProvider time, TimeSpan by, Func<bool> condition, Func<string>? describe = null)
    {
        await time.AdvanceAsync(by);
        var waited = Stopwatch.StartNew();
        for (var i = 1; !condition(); i++)
        {
            Assert.True(waited.Elapsed < TestTimeouts.Default, describe?.Invoke() ?? "the clock's effect never came");
            await Task.Delay(10);
            if (i % 10 == 0)
            {
                time.Advance(TimeSpan.FromMilliseconds(1));
            }
        }
    }
}
