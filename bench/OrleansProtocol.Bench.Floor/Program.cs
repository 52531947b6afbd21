using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OrleansProtocol;
using OrleansProtocol.Wire;

// One silo in this process; N callers, each driving its own EchoGrain as the gateway's pump drives a connection's:
// ConnectionMade once, then DataReceived(1 KiB) awaited in a closed loop. Calls per second and this process's CPU per
// call (the caller's loop included, as the pump's is in the gateway's figure), medians of the rounds. With --serve PORT,
// the same call behind a socket instead (FloorEchoServer), for the gateway bench to alternate with.
if (args.Length > 1 && args[0] == "--serve")
{
    await OrleansProtocol.Bench.Floor.FloorEchoServer.RunAsync(int.Parse(args[1]));
    return 0;
}

var connections = Arg("--connections", "16,64").Split(',').Select(int.Parse).ToArray();
var rounds = int.Parse(Arg("--rounds", "3"));
var duration = TimeSpan.FromSeconds(double.Parse(Arg("--duration", "5")));
var size = int.Parse(Arg("--size", "1024"));
var idle = int.Parse(Arg("--idle", "0"));

var builder = Host.CreateApplicationBuilder();
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.UseOrleans(silo => silo.UseLocalhostClustering(siloPort: 21211, gatewayPort: 21400));
using var host = builder.Build();
await host.StartAsync();
var grains = host.Services.GetRequiredService<IGrainFactory>();
var observer = grains.CreateObjectReference<ITransportObserver>(new NullObserver());
if (idle > 0)
{
    await IdleAsync(idle);
    await host.StopAsync();
    return 0;
}

Console.WriteLine($"floor: IProtocolGrain.DataReceived({size} B) on EchoGrain from the silo's hosted client, no socket; {rounds} rounds of {duration.TotalSeconds:0} s, medians; {Environment.ProcessorCount} cores");
Console.WriteLine();
Console.WriteLine("| callers | call | calls/s | process CPU µs/call | p50 µs | p99 µs | allocated B/call |");
Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|");
foreach (var callers in connections)
{
    // Orleans' own floor (an empty call, no argument, no reply) beside the gateway's callback, alternating round by round.
    var runs = new[] { new List<Result>(), new List<Result>() };
    for (var round = 0; round < rounds + 1; round++)
    {
        var echo = await RunAsync(callers, empty: false);
        var empty = await RunAsync(callers, empty: true);
        if (round > 0)
        {
            // The first round warms the JIT and the grains' paths.
            runs[0].Add(echo);
            runs[1].Add(empty);
        }
    }

    foreach (var (name, list) in new[] { ("DataReceived (EchoGrain)", runs[0]), ("Ping() (empty grain)", runs[1]) })
    {
        double M(Func<Result, double> f) => list.Select(f).Order().ElementAt(list.Count / 2);
        Console.WriteLine($"| {callers} | {name} | {M(r => r.Rate):N0} | {M(r => r.Cpu):N1} | {M(r => r.P50):N0} | {M(r => r.P99):N0} | {M(r => r.Allocated):N0} |");
    }
}

await host.StopAsync();
return 0;

async Task<Result> RunAsync(int callers, bool empty)
{
    var stop = 0;
    var latencies = new List<long>[callers];
    var payload = new byte[size];
    var grainList = new List<IProtocolGrain>();
    for (var i = 0; i < callers; i++)
    {
        var id = $"floor/{Guid.NewGuid():N}";
        var grain = grains.GetGrain<IProtocolGrain>(GrainId.Create("echo", id));
        await grain.ConnectionMade(new ConnectionInfo(id, "floor", new IPEndPoint(IPAddress.Loopback, 1), new IPEndPoint(IPAddress.Loopback, 2)) { GrainType = "echo" }, observer);
        grainList.Add(grain);
    }

    for (var i = 0; i < callers; i++)
    {
        latencies[i] = new List<long>(1 << 20);
    }

    var process = Process.GetCurrentProcess();
    var cpuBefore = process.TotalProcessorTime;
    var allocatedBefore = GC.GetTotalAllocatedBytes();
    var started = Stopwatch.GetTimestamp();
    var tasks = Enumerable.Range(0, callers).Select(i => Task.Run(async () =>
    {
        var list = latencies[i];
        long sent = 0;
        var emptyGrain = grains.GetGrain<IEmptyGrain>(1_000_000 + i);
        while (empty && Volatile.Read(ref stop) == 0)
        {
            var start = Stopwatch.GetTimestamp();
            await emptyGrain.Ping();
            list.Add(Stopwatch.GetTimestamp() - start);
        }

        while (!empty && Volatile.Read(ref stop) == 0)
        {
            var start = Stopwatch.GetTimestamp();
            var reply = await grainList[i].DataReceived(payload, sent);
            list.Add(Stopwatch.GetTimestamp() - start);
            if (reply.Status != ProtocolReplyStatus.Accepted || reply.Batch is not { } batch || !batch.Data.Span.SequenceEqual(payload))
            {
                throw new InvalidDataException($"not an echo: {reply.Status}, {reply.Batch?.Data.Length} bytes");
            }

            sent += batch.Data.Length;
        }
    })).ToArray();
    await Task.Delay(duration);
    Volatile.Write(ref stop, 1);
    await Task.WhenAll(tasks);
    var wall = Stopwatch.GetElapsedTime(started);
    process.Refresh();
    var cpu = process.TotalProcessorTime - cpuBefore;
    var allocated = GC.GetTotalAllocatedBytes() - allocatedBefore;
    foreach (var grain in grainList)
    {
        await grain.ConnectionLost(ConnectionCloseReason.PeerClosed, null);
    }

    var all = latencies.SelectMany(l => l).Order().ToArray();
    double Percentile(double p) => all[(int)Math.Min(all.Length - 1, p * all.Length)] * 1e6 / Stopwatch.Frequency;
    // The latency lists are preallocated: what is counted is the calls' (and the callers' loops').
    return new Result(all.Length / wall.TotalSeconds, cpu.TotalMicroseconds / all.Length, Percentile(0.5), Percentile(0.99), (double)allocated / all.Length);
}

// Memory per idle grain, no socket: N EchoGrains after ConnectionMade and one 16 B DataReceived, against N grains of
// an empty class activated by one call (Orleans' own cost per activation). Managed heap after a full collection, and RSS.
async Task IdleAsync(int count)
{
    Console.WriteLine($"floor: memory per idle activation, {count} grains, no socket; {Environment.ProcessorCount} cores");
    Console.WriteLine();
    Console.WriteLine("| grain | managed heap KiB/grain | RSS KiB/grain |");
    Console.WriteLine("|---|---:|---:|");
    await MeasureAsync("empty grain (one call)", async i => await grains.GetGrain<IEmptyGrain>(i).Ping());
    var message = new byte[16];
    await MeasureAsync("EchoGrain (ConnectionMade, one DataReceived)", async i =>
    {
        var id = $"idle/{i}";
        var grain = grains.GetGrain<IProtocolGrain>(GrainId.Create("echo", id));
        await grain.ConnectionMade(new ConnectionInfo(id, "floor", new IPEndPoint(IPAddress.Loopback, 1), new IPEndPoint(IPAddress.Loopback, 2)) { GrainType = "echo" }, observer);
        await grain.DataReceived(message, 0);
    });

    async Task MeasureAsync(string name, Func<int, Task> activate)
    {
        await Task.WhenAll(Enumerable.Range(-16, 16).Select(activate));
        var (heapBefore, rssBefore) = Reading();
        for (var batch = 0; batch < count; batch += 100)
        {
            await Task.WhenAll(Enumerable.Range(batch, Math.Min(100, count - batch)).Select(activate));
        }

        var (heapAfter, rssAfter) = Reading();
        Console.WriteLine($"| {name} | {(heapAfter - heapBefore) / 1024.0 / count:N2} | {(rssAfter - rssBefore) / 1024.0 / count:N2} |");
    }

    static (long Heap, long Rss) Reading()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        using var process = Process.GetCurrentProcess();
        return (GC.GetTotalMemory(false), process.WorkingSet64);
    }
}

string Arg(string name, string fallback) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;

internal sealed record Result(double Rate, double Cpu, double P50, double P99, double Allocated);

/// <summary>The floor pushes nothing: the echo travels with each reply.</summary>
internal sealed class NullObserver : ITransportObserver
{
    public Task<long> Send(GrainId grain, TransportBatch batch) => Task.FromResult(0L);
}

/// <summary>A grain with no state: what Orleans itself keeps per activation.</summary>
public interface IEmptyGrain : IGrainWithIntegerKey
{
    Task Ping();
}

/// <inheritdoc cref="IEmptyGrain"/>
public sealed class EmptyGrain : Grain, IEmptyGrain
{
    public Task Ping() => Task.CompletedTask;
}
