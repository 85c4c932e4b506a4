// A heated-tank plant on node-opcua: an OPC-UA server not built on asyncua, for the tests.
//
//   node server.js --port 4840 [--pki DIR] [--period-ms 100]
//
// Listens on 127.0.0.1 only, security None, anonymous; prints one line
// "ready opc.tcp://127.0.0.1:<port>/heatedtank" on stdout once it serves, and
// "written HeaterPower <value>" each time a client changes the MV. SIGTERM / SIGINT stop it.
//
// Variables (AnalogItemType: EngineeringUnits and EURange on each), in the folder HeatedTank of
// namespace urn:process-twin:test:heated-tank, node ids s=HeatedTank.<name>:
//   Temperature        degC  measured, follows HeaterPower (first order) plus noise
//   Level              m     measured, a slow sine plus noise
//   InletFlow          m3/h  measured, noise around 8
//   InletTemperature   degC  measured, a slow sine plus noise
//   HeaterPower        kW    the MV: writable, 40 until written; never changed by the server,
//                            so node-opcua notifies it once per subscription and then only
//                            after a write (report-by-exception)
//   JacketTemperature  degC  a failed sensor: always BadSensorFailure (0x808C0000)
"use strict";

const path = require("path");
const os = require("os");
const {
  OPCUAServer,
  OPCUACertificateManager,
  DataType,
  StatusCodes,
  MessageSecurityMode,
  SecurityPolicy,
  standardUnits,
} = require("node-opcua");

const NAMESPACE = "urn:process-twin:test:heated-tank";

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(option("port", "0"));
const pki = option("pki", path.join(os.tmpdir(), "process-twin-nodeopcua-pki"));
const periodMs = Number(option("period-ms", "100"));
if (!(port > 0)) {
  console.error("usage: node server.js --port PORT [--pki DIR] [--period-ms MS]");
  process.exit(2);
}

function noise(sigma) {
  // Box-Muller: a normal sample, so every update differs and is notified
  const u = 1 - Math.random();
  return sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
}

async function main() {
  const server = new OPCUAServer({
    port,
    host: "127.0.0.1",
    hostname: "127.0.0.1",
    resourcePath: "/heatedtank",
    securityModes: [MessageSecurityMode.None],
    securityPolicies: [SecurityPolicy.None],
    allowAnonymous: true,
    serverCertificateManager: new OPCUACertificateManager({
      rootFolder: path.join(pki, "own"),
      automaticallyAcceptUnknownCertificate: true,
    }),
    userCertificateManager: new OPCUACertificateManager({
      rootFolder: path.join(pki, "user"),
      automaticallyAcceptUnknownCertificate: true,
    }),
    buildInfo: { productName: "process-twin heated tank (node-opcua)" },
  });
  await server.initialize();

  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace(NAMESPACE);
  const tank = ns.addFolder(addressSpace.rootFolder.objects, {
    browseName: "HeatedTank",
    nodeId: "s=HeatedTank",
  });

  function analog(name, unit, low, high, description, writable) {
    const access = writable ? "CurrentRead | CurrentWrite" : "CurrentRead";
    const v = ns.addAnalogDataItem({
      organizedBy: tank,
      browseName: name,
      nodeId: `s=HeatedTank.${name}`,
      description,
      dataType: "Double",
      engineeringUnits: unit,
      engineeringUnitsRange: { low, high },
      accessLevel: access,
      userAccessLevel: access,
      minimumSamplingInterval: 0,
    });
    return v;
  }

  const u = standardUnits;
  const tags = {
    Temperature: analog("Temperature", u.degree_celsius, 0, 150, "tank temperature"),
    Level: analog("Level", u.metre, 0, 5, "tank level"),
    InletFlow: analog("InletFlow", u.cubic_metre_per_hour, 0, 20, "inlet flow"),
    InletTemperature: analog("InletTemperature", u.degree_celsius, 0, 100, "inlet temperature"),
    JacketTemperature: analog("JacketTemperature", u.degree_celsius, 0, 200, "failed sensor"),
  };
  const power = analog("HeaterPower", u.kilowatt, 0, 100, "heater power", true);

  const state = { temperature: 60, t0: Date.now() };
  const set = (v, value, status) =>
    v.setValueFromSource({ dataType: DataType.Double, value }, status || StatusCodes.Good);
  set(power, 40.0);
  power.on("value_changed", (dv) => console.log(`written HeaterPower ${dv.value.value}`));

  function step() {
    const t = (Date.now() - state.t0) / 1000;
    const dt = periodMs / 1000;
    const target = 20 + 1.2 * power.readValue().value.value; // 40 kW -> 68 degC
    state.temperature += (dt / 20) * (target - state.temperature);
    set(tags.Temperature, state.temperature + noise(0.02));
    set(tags.Level, 2.5 + 0.2 * Math.sin(t / 5) + noise(0.002));
    set(tags.InletFlow, 8 + noise(0.1));
    set(tags.InletTemperature, 20 + 0.5 * Math.sin(t / 7) + noise(0.01));
    set(tags.JacketTemperature, 0, StatusCodes.BadSensorFailure);
  }
  step();
  const timer = setInterval(step, periodMs);

  let stopping = false;
  async function stop() {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    await server.shutdown(0);
    process.exit(0);
  }
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  await server.start();
  console.log(`ready opc.tcp://127.0.0.1:${port}/heatedtank`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
