namespace OrleansProtocol.Tests.Infrastructure;

public static class TestTimeouts
{
    /// <summary>Upper bound for anything a test awaits; reached only when the behaviour under test is broken.</summary>
    public static readonly TimeSpan Default = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a test watches for something that must NOT happen (a callback while reading is paused). Absence cannot
    /// be awaited as an event; this bounds the observation window, it does not synchronise anything.
    /// </summary>
    public static readonly TimeSpan QuietPeriod = TimeSpan.FromMilliseconds(300);
}
