# Entry point: reads the environment, listens, drains on SIGTERM/SIGINT.
require "./app"

config = CrystalApp::Config.from_env

if ARGV.includes?("--healthcheck")
  exit CrystalApp.healthcheck(config.port)
end

service = CrystalApp::Service.new(config)
address = service.bind(config.host, config.port)
STDOUT.puts({"time" => Time.utc.to_rfc3339(fraction_digits: 3), "service" => config.service,
             "event" => "listening", "address" => address.address, "port" => address.port,
             "version" => config.version}.to_json)
STDOUT.flush

drained = Channel(Bool).new
shutdown = ->(signal : String) do
  STDOUT.puts({"time" => Time.utc.to_rfc3339(fraction_digits: 3), "service" => config.service,
               "event" => "shutdown", "signal" => signal}.to_json)
  STDOUT.flush
  spawn { drained.send(service.drain) }
end
Signal::TERM.trap { shutdown.call("SIGTERM") }
Signal::INT.trap { shutdown.call("SIGINT") }

spawn { service.listen }
exit(drained.receive ? 0 : 1)
