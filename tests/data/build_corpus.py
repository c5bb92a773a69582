"""Writes the identifier corpus (tests/data/identifiers/*.jsonl, tests/data/corpus/*.jsonl).

    .venv/bin/python tests/data/build_corpus.py

Every shape comes from a published device message or fixture; `S` below names each source
(tests/data/README.md lists them with what was taken). Identifier values are the ones the
sources publish, or made-up ones of the same vendor prefix where the source masked them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

S = {
    "miio-info": "rytilahti/python-miio miio/deviceinfo.py (DeviceInfo docstring: miIO.info of "
    "chuangmi.plug.m1) and miio/tests/test_deviceinfo.py",
    "miio-nwt": "rytilahti/python-miio miio/integrations/nwt/dehumidifier/test_airdehumidifier.py "
    "(miIO.info: mac 78:11:..., netif.localIp)",
    "vacuum-net": "marcelrv/XiaomiRobotVacuumProtocol network_info.md (get_network_info result)",
    "push": "rytilahti/python-miio docs/push_server.rst (send_data_frame scene trace) and "
    "docs/examples/push_server/gateway_button_press.py (lumi.<did>)",
    "yeelight": "rytilahti/python-miio miio/integrations/yeelight/dual_switch/"
    "test_yeelight_dual_switch.py (rc_list: BLE mac, beaconkey)",
    "ha-miio": "home-assistant/core tests/components/xiaomi_miio/test_config_flow.py "
    "(TEST_ZEROCONF_NAME, TEST_FIRMWARE_VERSION, TEST_HARDWARE_VERSION, TEST_TOKEN)",
    "ha-tasmota": "home-assistant/core tests/components/tasmota/test_common.py (DEFAULT_CONFIG "
    "discovery: hn, mac, sw, t, ip)",
    "tasmota-log": "https://gist.github.com/tablatronix/1ff3262f8ab9f73af814fbd6a77fad98 "
    "(Tasmota syslog: host tasmota_C59B5E-7006, tele/STATE, STATUS10)",
    "tasmota-state": "https://pastebin.com/4izDrY6W (Tasmota tele/tasmota_9CF9D1/STATE, "
    "Wifi.BSSId)",
    "tasmota-status": "https://pastebin.com/hkkLFbun (Tasmota stat/STATUS, STATUS1: Topic, "
    "GroupTopic, OtaUrl, RestartReason, Uptime)",
    "ha-shelly": "home-assistant/core tests/components/shelly/fixtures/2pm_gen3.json "
    "(/shelly, sys.device, mqtt.client_id, wifi.sta_ip, fw_id)",
    "openhab-shelly": "openhab/openhab-addons bundles/org.openhab.binding.shelly/doc/"
    "DEVNOTES - API JSON Samples.md (Gen1 /settings and /status; an earlier revision carried "
    "mac CC50E3559F55, hostname shellyswitch-559F55; out_on_url with shelly1pm-e5bed0)",
    "mb-shelly": "Luligu/matterbridge-shelly src/mock/shellyplus1pm-441793D69718.json "
    "(Gen2 /shelly: id shellyplus1pm-441793d69718, mac 441793D69718, fw 1.3.1-gd8534ee)",
    "esphome-log": "https://pastebin.com/XPYZW743 (ESPHome wifi dump_config: Local MAC, IP "
    "Address, Subnet, DNS)",
    "esphome-wifi-info": "https://esphome.io/components/text_sensor/wifi_info (ip_address, "
    "address_0..4 IPv6, mac_address, bssid) and https://esphome.io/api/"
    'wifi__info__text__sensor_8h_source (unique_id = get_mac_address() + "-wifiinfo-ip")',
    "z2m-log": "https://pastebin.com/0tHNY0QN (zigbee2mqtt bridge/log: device_connected, "
    "interview_started, devices with ieeeAddr, modelID, lastSeen)",
    "z2m-docs": "https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html "
    "(FRIENDLY_NAME is the IEEE address unless set; device messages)",
    "z2m-bridge": "barbaris-in/smart-home docs/mqtt/mqtt-flow.md (zigbee2mqtt/bridge/info "
    "devices map keyed by 0x00158d... IEEE addresses)",
    "iwman": "taoyuan/iwman docs/statuses.md (wifi status: ipv6_address fe80::..., "
    "ipv4_address, access_point)",
    "miservice": "Yonsm/MiService README.md (MIoT spec urn, xiaomi.wifispeaker.lx04, did)",
    "issue": "this project's issue 7 (spellings reported leaking through declared fields)",
    "seed": "shared/seeds/004_fb02018b5b40ec4f.txt (Mi account information: e-mail, phone)",
    "imei": "3GPP TS 23.003 sec. 6.2 (IMEI = TAC 8 + SNR 6 + check digit; IMEISV = 16 digits) "
    "and https://en.wikipedia.org/wiki/International_Mobile_Equipment_Identity (worked Luhn "
    "example 49015420323751-8, AA-BBBBBB-CCCCCC-D grouping)",
    "miap": "Xiaomi's setup access point name <model>_miapXXXX (the MAC's last two bytes), as in "
    "a published Xiaoai speaker setup note (xiaomi-wifispeaker-lx06_miapxxxx) found by code "
    "search",
    "esphome-api": "https://esphome.io/components/api (encryption key: 32 bytes, base64)",
    "arduino-esp32": "espressif/arduino-esp32 libraries/Network/src/NetworkManager.cpp "
    '(NetworkManager::getHostname: CONFIG_IDF_TARGET "-" + the MAC\'s last three bytes, '
    "%02X, e.g. esp32s3-XXXXXX)",
    "openbk": "openshwprojects/OpenBK7231T_App src/new_cfg.c (CFG_SetDefaultConfig: "
    "longDeviceName OpenBK7231T_AABBCCDD, shortDeviceName and MQTT client id obkAABBCCDD, "
    "from mac[2..5]; MQTT group bekens_n)",
    "ha-hue": "home-assistant/core tests/components/hue/test_config_flow.py (zeroconf name "
    "'Philips Hue - ABCABC._hue._tcp.local.', bridgeid ecb5fafffeabcabc, host "
    "fd00::eeb5:faff:fe84:b17d, hostname Philips-hue.local, modelid BSB002)",
    "sonoff-diy": "njh/sonoff-ota-flash-cli README.md (Sonoff DIY mDNS host eWeLink_1000e4c17c, "
    "/zeroconf/info data: deviceid 1000e4c17c, bssid, fwVersion 3.5.0; Tasmota AP "
    "tasmota_62E43F-1087)",
    "govee": "Thrilleratplay/GoveeWatcher README.md (BLE name GVH5075_ + the MAC's last two "
    "bytes); Bluetooth-Devices/govee-ble tests/test_parser.py (GVH5075_2762, "
    "Govee_H5052_E81B); home-assistant/core tests/components/govee_ble/__init__.py "
    "(GVH5075 2762)",
    "modem": "3GPP TS 27.007 AT+CIMI (IMSI, 15 digits) and Quectel AT+QCCID (ICCID, 19-20 "
    "digits, a hex letter or a trailing F pad), responses as published in modem drivers "
    "found by code search (+QCCID: 89860318045712762387, 898604991023C0032817, "
    "8988303000008051950F; AT+CIMI 460030916875923)",
    "nanoleaf": "developer79433/nanoleaf-controller example-responses/controller-info.json "
    "(name 'Nanoleaf Light Panels 00:00:00', model NL22, firmwareVersion 3.0.3) and src/main.cpp "
    "(AURORA_HOSTNAME Nanoleaf-Light-Panels-53-3b-5d.local); mDNS instance names published in "
    "Nanoleaf discovery code found by code search ('Nanoleaf Light Panels 53:3b:9b', TXT "
    "id=00:55:DA:53:3B:9B: the MAC's last three bytes)",
    "atc": "atc1441/ATC_MiThermometer ATC_Thermometer/ble.c (init_ble: BLE name 'ATC_' + the "
    "MAC's last three bytes, %X; the LYWSD03MMC's OUI A4:C1:38 as in theengs/decoder "
    "src/devices/LYWSD03MMC_json.h)",
    "lmic": "electronicaricardomella/meteoLoRa integracion/TTNdata.h (LMIC: DEVEUI[8]={ 0x7E, "
    "0x1E, 0x06, 0xD0, 0x7E, 0xD5, 0xB3, 0x70} least significant byte first, APPKEY[16] as a "
    "byte list, APPEUI all 0x00)",
    "sonos": "SoCo/SoCo tests/test_core.py (ZoneGroupState UUID RINCON_000E5884455C01400, "
    "RINCON_B8E93781F3EA01400, group ID RINCON_000E5876A0E801400:210; device description "
    "serialNum 00-11-22-33-44-55:E, UDN uuid:RINCON_000E5884455C01400_MR, softwareVersion "
    "49.2-64250, hardwareVersion 1.8.1.2-2, feature1 0x02000002, seriesid P100)",
    "home-connect": "home-assistant/core tests/components/home_connect (haId "
    "SIEMENS-HCS02DWH1-6BE58C26DCC1); FHEM HomeConnect module docs (SIEMENS-HCS02DWH1-"
    "83D908F0471F71); Home Connect API samples (vib HCS02DWH1, HCS06COM1/01)",
    "tuya": "yaronb1/SmartController definitions/TuyaDevices.py (Tuya device ids: 22-character "
    "bfead50cf029f5ff14fh6u, 20-hex 64560500ecfabc7b40e1 ending in an Espressif MAC, "
    "16-character bf40667rf70c9sae; product key j0zozzoarutv0nu1 in fhempy's Tuya README)",
    "wiz": "home-assistant/core tests/components/wiz/test_config_flow.py (DHCP hostname "
    "wiz_abcabc for FAKE_MAC ABCABCABCABC: 'wiz_' + the MAC's last three bytes; title "
    "'WiZ Dimmable White ABCABC'; getSystemConfig moduleName ESP_0711_STR, ESP10_SOCKET_06, "
    "fwVersion 1.21.0); homeassistant/components/wiz/manifest.json (dhcp hostname wiz_*)",
    "matter": "duglah/PlantCabinet-Controller README.md (SetupQRCode MT:Y.K9042C00KA0648G00, "
    "manual pairing code 34970112332: the Matter SDK's test device, passcode 20202021, "
    "discriminator 3840); lankahsu520/HelperX helper_MatterController-chip-tool.md; manual "
    "codes shown 4-3-4 (3497-011-2332) in published Matter controllers found by code search",
    "homekit": "openhab/openhab-addons bundles/org.openhab.io.homekit/README.md "
    "(org.openhab.homekit:pin=031-45-154); HAP-NodeJS accessory examples found by code search "
    '(pincode "031-45-154": a HomeKit setup code, XXX-XX-XXX)',
}

# -- the identifiers ------------------------------------------------------------------------------

MAC_XIAOMI = "28:6C:07:A4:1B:9E"  # 28:6C:07 as in vacuum-net ("28:6C:07:AA:AA:AA")
MAC_NWT = "78:11:DC:5E:77:0B"  # 78:11:DC as in miio-nwt ("78:11:FF:FF:FF:FF")
MAC_ESP = "BC:DD:C2:5E:77:0B"  # issue
MAC_TASMOTA = "C8:2B:96:C5:9B:5E"  # tasmota-log host tasmota_C59B5E (C8:2B:96 Espressif)
BSSID = "E6:8D:8C:4B:BE:F7"  # tasmota-state
MAC_SHELLY1 = "CC:50:E3:55:9F:55"  # openhab-shelly
MAC_SHELLY2 = "44:17:93:D6:97:18"  # mb-shelly
MAC_ESPHOME = "80:F3:DA:A9:6D:44"  # esphome-log
MAC_VACUUM = "b0:4a:39:04:f0:5a"  # vacuum-net
BSSID_VACUUM = "2a:e8:29:e4:cb:26"  # vacuum-net
BLE_MAC = "9db0eb4124f8"  # yeelight
IEEE_1 = "0x00158d000278e797"  # z2m-log
IEEE_2 = "0x00158d000122604e"  # z2m-bridge
IEEE_COORD = "0x00124b0018e1ab0e"  # z2m-log
IP_LAN = "192.168.20.46"  # tasmota-log
IP_LAN2 = "192.168.68.229"  # esphome-log
IP_VACUUM = "192.168.178.99"  # vacuum-net
IP_PUBLIC = "81.2.69.142"  # the geo test address (MaxMind test data)
IP6_LL = "fe80::e8d4:e951:aaa2:2ac1"  # iwman
IP6_DOC = "2001:db8:85a3::8a2e:370:7334"
IMEI = "490154203237518"  # imei
IMEI2 = "352099001761481"
EMAIL = "jane.doe+iot@example.com"
PHONE = "+8613812345678"
TOKEN_MIIO = "2b00042f7481c7b056c4b410d28f33cf"  # miio-info
BEACONKEY = "3691bc0679eef9596bb63abf"  # yeelight
API_KEY = "px7tsbK3C7bpXHr2OevEV2ZMg/FrNBw2+O2pNPbedtA="  # esphome-api shape (32 bytes)
DID = "12345678"  # ha-miio's _miio12345678


def leaky() -> list[dict[str, Any]]:
    """Values that carry identifiers: every one must be caught, none of its forms left."""
    rows: list[tuple[str | int, list[str | int], str]] = [
        # MAC-48, every spelling
        (MAC_XIAOMI, [MAC_XIAOMI], "vacuum-net"),
        ("28:6c:07:a4:1b:9e", [MAC_XIAOMI], "vacuum-net"),
        ("286c07a41b9e", [MAC_XIAOMI], "esphome-wifi-info"),
        ("286C07A41B9E", [MAC_XIAOMI], "ha-shelly"),
        ("286c.07a4.1b9e", [MAC_XIAOMI], "issue"),
        ("28-6C-07-A4-1B-9E", [MAC_XIAOMI], "issue"),
        ("28 6C 07 A4 1B 9E", [MAC_XIAOMI], "issue"),
        ("28.6C.07.A4.1B.9E", [MAC_XIAOMI], "issue"),
        ("286c07-a41b9e", [MAC_XIAOMI], "issue"),
        ("MAC28:6C:07:A4:1B:9E", [MAC_XIAOMI], "issue"),
        ("mac:28:6c:07:a4:1b:9e", [MAC_XIAOMI], "issue"),
        ("mac=28%3A6C%3A07%3AA4%3A1B%3A9E", [MAC_XIAOMI], "issue"),
        ("286c07a41b9e-wifiinfo-ip", [MAC_XIAOMI], "esphome-wifi-info"),
        ("1.2.4_16 mac=BC:DD:C2:5E:77:0B", [MAC_ESP], "issue"),
        ("KEY_HOME 28:6C:07:A4:1B:9E", [MAC_XIAOMI], "issue"),
        (MAC_NWT, [MAC_NWT], "miio-nwt"),
        (MAC_VACUUM, [MAC_VACUUM], "vacuum-net"),
        (BSSID_VACUUM, [BSSID_VACUUM], "vacuum-net"),
        (BSSID, [BSSID], "tasmota-state"),
        ("Local MAC: 80:F3:DA:A9:6D:44", [MAC_ESPHOME], "esphome-log"),
        ("CC50E3559F55", [MAC_SHELLY1], "openhab-shelly"),
        ("441793D69718", [MAC_SHELLY2], "mb-shelly"),
        (BLE_MAC, [BLE_MAC], "yeelight"),
        ("A4:C1:38:9F:2E:7B: joined", ["A4:C1:38:9F:2E:7B"], "issue"),
        ("peer aa-bb-cc-dd-ee-ff", ["aa-bb-cc-dd-ee-ff"], "issue"),
        # host names that carry the MAC's tail
        ("ESP-A41B9E", [MAC_XIAOMI], "issue"),
        ("ESP_A41B9E", [MAC_XIAOMI], "issue"),
        ("tasmota_C59B5E-7006", [MAC_TASMOTA], "tasmota-log"),
        ("tasmota-C59B5E-7006", [MAC_TASMOTA], "tasmota-log"),
        ("tele/tasmota_C59B5E/STATE", [MAC_TASMOTA], "tasmota-log"),
        ("DVES_C59B5E", [MAC_TASMOTA], "tasmota-log"),
        ("cmnd/DVES_C59B5E_fb/", [MAC_TASMOTA], "tasmota-log"),
        ("tasmota_49A3BC-0956", ["00000049A3BC"], "ha-tasmota"),
        ("00000049A3BC", ["00000049A3BC"], "ha-tasmota"),
        ("shellyswitch-559F55", [MAC_SHELLY1], "openhab-shelly"),
        ("shellies/shellyswitch-559F55/online", [MAC_SHELLY1], "openhab-shelly"),
        ("shellyplug-s-A41B9E", [MAC_XIAOMI], "issue"),
        ("shelly1-A41B9E", [MAC_XIAOMI], "issue"),
        ("shellyplus1pm-441793d69718", [MAC_SHELLY2], "mb-shelly"),
        ("shelly2pmg3-286c07a41b9e", [MAC_XIAOMI], "ha-shelly"),
        (
            "http://10.0.0.20:8080/shelly/event/shelly1pm-e5bed0/relay/0?type=out_on",
            ["84F3EBE5BED0", "10.0.0.20"],
            "openhab-shelly",
        ),
        ("esphome-web-a96d44", [MAC_ESPHOME], "esphome-wifi-info"),
        ("ESP_123456", ["24:0A:C4:12:34:56"], "issue"),
        ("lumi-gateway-v3_miio12345678._miio._udp.local.", [DID], "ha-miio"),
        ("zhimi-airpurifier-ma2_miapA1B2", ["A1B2"], "miap"),
        # EUI-64 / IEEE
        (IEEE_1, [IEEE_1], "z2m-log"),
        ("0X00158D000278E797", [IEEE_1], "z2m-docs"),
        ("lumi.158d000278e797", [IEEE_1], "push"),
        ("00:15:8d:00:02:78:e7:97", [IEEE_1], "z2m-docs"),
        ("00158d000278e797", [IEEE_1], "z2m-docs"),
        (f"Device '{IEEE_1}' joined", [IEEE_1], "z2m-log"),
        (f"zigbee2mqtt/{IEEE_2}/set", [IEEE_2], "z2m-bridge"),
        (IEEE_COORD, [IEEE_COORD], "z2m-log"),
        ("lumi.123456789abcdef", ["123456789abcdef"], "push"),
        # IPv4 and IPv6
        (IP_LAN, [IP_LAN], "tasmota-log"),
        ("host192.168.20.46", [IP_LAN], "issue"),
        ("192.168.020.046", [IP_LAN], "issue"),
        ("192%2E168%2E20%2E46", [IP_LAN], "issue"),
        ("IP Address: 192.168.68.229", [IP_LAN2], "esphome-log"),
        ("Connected to 192.168.178.99.", [IP_VACUUM], "vacuum-net"),
        ("192.168.6.7:1883", ["192.168.6.7"], "openhab-shelly"),
        (IP_PUBLIC, [IP_PUBLIC], "issue"),
        ("::ffff:81.2.69.142", [IP_PUBLIC], "issue"),
        (IP6_LL, [IP6_LL], "iwman"),
        (f"{IP6_LL}/64", [IP6_LL], "iwman"),
        (f"ip:{IP6_LL}", [IP6_LL], "issue"),
        (IP6_DOC, [IP6_DOC], "esphome-wifi-info"),
        ("[2001:db8:85a3::8a2e:370:7334]:6053", [IP6_DOC], "esphome-wifi-info"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", [IP6_DOC], "esphome-wifi-info"),
        # IMEI
        (IMEI, [IMEI], "imei"),
        ("49-015420-323751-8", [IMEI], "imei"),
        ("49 015420 323751 8", [IMEI], "imei"),
        ("49015420-323751-8", [IMEI], "imei"),
        ("IMEI:352099001761481", [IMEI2], "imei"),
        ("3520990017614823", ["3520990017614823"], "imei"),
        (int(IMEI), [int(IMEI)], "issue"),
        (int(IMEI2), [int(IMEI2)], "issue"),
        # MACs and IEEE addresses as JSON numbers, private IPv4 as a number
        (int(MAC_XIAOMI.replace(":", ""), 16), [int(MAC_XIAOMI.replace(":", ""), 16)], "issue"),
        (int(IEEE_1, 16), [int(IEEE_1, 16)], "issue"),
        (int("00158d000122604e", 16), [int("00158d000122604e", 16)], "issue"),
        (3232240686, [IP_LAN], "issue"),
        # e-mail, phone
        (EMAIL, [EMAIL], "seed"),
        ("mailto:jane.doe+iot@example.com", [EMAIL], "seed"),
        ("jane.doe%2Biot%40example.com", [EMAIL], "seed"),
        ("Owner: Jane.Doe+IoT@Example.com.", [EMAIL], "seed"),
        (PHONE, [PHONE], "seed"),
        # tokens and keys
        (TOKEN_MIIO, [TOKEN_MIIO], "miio-info"),
        ("12345678901234567890123456789012", ["12345678901234567890123456789012"], "ha-miio"),
        (BEACONKEY, [BEACONKEY], "yeelight"),
        (
            "[{'mac':'9db0eb4124f8','evtid':4097,'pid':339,'beaconkey':'3691bc0679eef9596bb63abf'}]",
            [BLE_MAC, BEACONKEY],
            "yeelight",
        ),
        (API_KEY, [API_KEY], "esphome-api"),
        ("123e4567-e89b-12d3-a456-426614174000", ["123e4567-e89b-12d3-a456-426614174000"], "issue"),
        # vendor default names (leaked before the _VENDOR family / esp32 variants, except where
        # noted in tests/data/README.md)
        ("esp32s3-123456", ["24:0A:C4:12:34:56"], "arduino-esp32"),
        ("esp32c3-ABCDEF", ["24:0A:C4:AB:CD:EF"], "arduino-esp32"),
        ("obk07A41B9E", [MAC_XIAOMI], "openbk"),
        ("obk07A41B9E/connected", [MAC_XIAOMI], "openbk"),
        ("OpenBK7231T_07A41B9E", [MAC_XIAOMI], "openbk"),
        ("OpenBK7231N_12345678", ["24:0A:12:34:56:78"], "openbk"),
        ("Philips Hue - ABCABC._hue._tcp.local.", ["ecb5fafffeabcabc"], "ha-hue"),
        ("Philips Hue - ABCABC", ["ecb5fafffeabcabc"], "ha-hue"),
        ("ecb5fafffeabcabc", ["ecb5fafffeabcabc"], "ha-hue"),
        ("fd00::eeb5:faff:fe84:b17d", ["fd00::eeb5:faff:fe84:b17d"], "ha-hue"),
        ("eWeLink_1000e4c17c", ["1000e4c17c"], "sonoff-diy"),
        ("eWeLink_1000e4c17c._ewelink._tcp.local.", ["1000e4c17c"], "sonoff-diy"),
        ("b4:fb:de:ad:be:ef", ["b4:fb:de:ad:be:ef"], "sonoff-diy"),
        ("tasmota_62E43F-1087", ["62E43F"], "sonoff-diy"),
        ("GVH5075_2762", ["2762"], "govee"),
        ("GVH5075 2762", ["2762"], "govee"),
        ("Govee_H5052_E81B", ["E81B"], "govee"),
        # SIM identifiers (caught before: digit runs of 14+, hex runs of 17+)
        ("+QCCID: 89860318045712762387", ["89860318045712762387"], "modem"),
        ("898604991023C0032817", ["898604991023C0032817"], "modem"),
        ("8988303000008051950F", ["8988303000008051950F"], "modem"),
        ("460030916875923", ["460030916875923"], "modem"),
        # second sweep: Nanoleaf mDNS names with the MAC's tail and its separators (leaked)
        ("Nanoleaf Light Panels 53:3b:9b", ["53:3b:9b"], "nanoleaf"),
        ("Nanoleaf Light Panels 53:3b:9b._nanoleafapi._tcp.local.", ["53:3b:9b"], "nanoleaf"),
        ("Nanoleaf-Light-Panels-53-3b-5d.local", ["53-3b-5d"], "nanoleaf"),
        ("Nanoleaf-Light-Panels-53-3b-5d", ["53-3b-5d"], "nanoleaf"),
        # ATC/pvvx thermometer firmware BLE names: one-class tails leaked, mixed ones did not
        ("ATC_123456", ["A4:C1:38:12:34:56"], "atc"),
        ("ATC_ABCDEF", ["A4:C1:38:AB:CD:EF"], "atc"),
        ("ATC_A41B9E", ["A4:C1:38:A4:1B:9E"], "atc"),
        # LoRaWAN DevEUI/AppKey as LMIC C byte lists (leaked)
        (
            "{ 0x7E, 0x1E, 0x06, 0xD0, 0x7E, 0xD5, 0xB3, 0x70}",
            ["0x7E, 0x1E, 0x06, 0xD0, 0x7E, 0xD5, 0xB3, 0x70"],
            "lmic",
        ),
        (
            "0x7E,0x1E,0x06,0xD0,0x7E,0xD5,0xB3,0x70",
            ["0x7E,0x1E,0x06,0xD0,0x7E,0xD5,0xB3,0x70"],
            "lmic",
        ),
        ("70B3D57ED0061E7E", ["70B3D57ED0061E7E"], "lmic"),
        ("70-B3-D5-7E-D0-06-1E-7E", ["70B3D57ED0061E7E"], "lmic"),
        # Sonos household player ids embed the MAC (caught before: a 17-hex run)
        ("RINCON_000E5884455C01400", ["000E5884455C"], "sonos"),
        ("uuid:RINCON_000E5884455C01400_MR", ["000E5884455C"], "sonos"),
        ("RINCON_000E5876A0E801400:210", ["000E5876A0E8"], "sonos"),
        ("RINCON_B8E93781F3EA01400", ["B8E93781F3EA"], "sonos"),
        ("00-11-22-33-44-55:E", ["00:11:22:33:44:55"], "sonos"),
        # Home Connect haIds end in the appliance's MAC or a longer serial (caught before)
        ("SIEMENS-HCS02DWH1-6BE58C26DCC1", ["6BE58C26DCC1"], "home-connect"),
        ("SIEMENS-HCS02DWH1-83D908F0471F71", ["83D908F0471F71"], "home-connect"),
        # Tuya device ids (caught before: hex runs of 17+)
        ("bfead50cf029f5ff14fh6u", ["bfead50cf029f5ff14"], "tuya"),
        ("64560500ecfabc7b40e1", ["64560500ecfabc7b40e1"], "tuya"),
        # WiZ DHCP host names: one-class tails leaked (no WiZ prefix), mixed ones did not
        ("wiz_abcabc", ["AB:CA:BC:AB:CA:BC"], "wiz"),
        # Matter and HomeKit setup codes (they grant control of the device): leaked
        ("3497-011-2332", ["3497-011-2332"], "matter"),
        ("3497 011 2332", ["3497-011-2332"], "matter"),
        ("MT:Y.K9042C00KA0648G00", ["MT:Y.K9042C00KA0648G00"], "matter"),
        ("031-45-154", ["031-45-154"], "homekit"),
    ]
    return [{"value": v, "forms": f, "source": S[s]} for v, f, s in rows]


def legit() -> list[dict[str, Any]]:
    """Values real devices send in declared fields: all must pass untouched."""
    rows: list[tuple[str | int, str]] = [
        # miIO info
        ("1.2.4_16", "miio-info"),
        ("MW300", "miio-info"),
        ("chuangmi.plug.m1", "miio-info"),
        ("otu", "miio-info"),
        ("SD878x-14.76.36.p84-702.1.0-WM", "miio-info"),
        ("255.255.255.0", "miio-info"),
        (-68, "miio-info"),
        (24, "miio-info"),
        (30312, "miio-info"),
        (742, "miio-info"),
        ("1.2.3_456", "ha-miio"),
        ("AB123", "ha-miio"),
        ("1.4.1_154", "issue"),
        ("3.5.8_0041", "issue"),
        ("2.1.9_0045", "issue"),
        ("4.1.6_1999", "issue"),
        ("chuangmi.camera.ipc009", "issue"),
        ("zhimi.airpurifier.ma2", "issue"),
        ("lumi.gateway.v3", "issue"),
        ("isa.camera.hlc7", "issue"),
        ("set_power", "issue"),
        ("get_prop", "issue"),
        ("KEY_HOME", "issue"),
        ("KEY_VOLUMEUP", "issue"),
        ("auto", "issue"),
        ("silent", "issue"),
        ("favorite", "issue"),
        ("ESP8266", "issue"),
        ("MC200", "issue"),
        ("0x1f", "issue"),
        ("2026-11-25T15:50:21Z", "issue"),
        # push server trace
        ("event.lumi.sensor_magnet.aq2.open", "push"),
        ("lumi.sensor_magnet.aq2", "push"),
        ("[1,6,1,0,[0,1],2,0]", "push"),
        ("[1,19,7,85,[40,123456],0,0]", "push"),
        ("0 0 * * 0,1,2,3,4,5,6", "push"),
        ("x.scene.1234567890", "push"),
        ("lumi.gateway.v3.set_rgb", "push"),
        ("alarm_triggering", "push"),
        ("send_data_frame", "push"),
        # Shelly
        ("20250508-110823/1.6.1-g8dbd358", "ha-shelly"),
        ("1.6.1", "ha-shelly"),
        ("S3SW-002P16EU", "ha-shelly"),
        ("S2PMG3", "ha-shelly"),
        ("Europe/Warsaw", "ha-shelly"),
        ("match_input", "ha-shelly"),
        ("15.15.255", "ha-shelly"),
        ("224.0.23.12:3671", "ha-shelly"),
        ("iot.shelly.cloud:6012/jrpc", "ha-shelly"),
        ("got ip", "ha-shelly"),
        ("15:32", "ha-shelly"),
        (1747488776, "ha-shelly"),
        (245788, "ha-shelly"),
        ("20190531-075812/v1.5.0-hotfix2@022ec015", "openhab-shelly"),
        ("20191127-095910/v1.5.6@0d769d69", "openhab-shelly"),
        ("prod-2018-10c", "openhab-shelly"),
        ("prod-190329", "openhab-shelly"),
        ("2019-05-31T07:58:12Z", "openhab-shelly"),
        ("time.google.com", "openhab-shelly"),
        ("while_opening", "openhab-shelly"),
        ("1730-0123-on", "openhab-shelly"),
        ("2350-0123456-off", "openhab-shelly"),
        ("1.3.1-gd8534ee", "mb-shelly"),
        ("SNSW-001P16EU", "mb-shelly"),
        # Tasmota
        ("9.0.0.1(tasmota)", "tasmota-log"),
        ("2021-06-13T06:59:52", "tasmota-log"),
        ("0T00:00:11", "tasmota-log"),
        ("Dynamic", "tasmota-log"),
        ("8.4.0.2", "ha-tasmota"),
        ("Sonoff Basic", "ha-tasmota"),
        ("%topic%/%prefix%/", "ha-tasmota"),
        ("11n", "tasmota-state"),
        ("0T00:10:11", "tasmota-state"),
        ("Software/System restart", "tasmota-status"),
        ("8E1", "tasmota-status"),
        ("FFFF", "tasmota-status"),
        ("tasmotas", "tasmota-status"),
        # zigbee2mqtt
        ("lumi.sensor_motion.aq2", "z2m-log"),
        ("RTCGQ11LM", "z2m-log"),
        ("ZNCZ02LM", "z2m-log"),
        ("zStack12", "z2m-log"),
        ("20181119", "z2m-log"),
        ("EndDevice", "z2m-log"),
        ("interview_started", "z2m-log"),
        (1574258146082, "z2m-log"),
        (40011, "z2m-log"),
        (4151, "z2m-log"),
        ("single", "z2m-docs"),
        ("Bedroom Desk Switch", "z2m-bridge"),
        # ESPHome
        ("Signal strength: -51 dB", "esphome-log"),
        ("Subnet: 255.255.255.0", "esphome-log"),
        ("DNS2: 0.0.0.0", "esphome-log"),
        ("garage-freezer", "esphome-log"),
        ("GPIO25", "esphome-log"),
        (115200, "esphome-log"),
        # MIoT
        ("urn:miot-spec-v2:device:speaker:0000A015:xiaomi-lx04:1", "miservice"),
        ("xiaomi.wifispeaker.lx04", "miservice"),
        # free text the engine's tests already keep
        ("caught std::bad_alloc in Worker::run", "issue"),
        ("Class::method returned 0", "issue"),
        ("time 12:30:45 ok", "issue"),
        ("error 0x1f at step 3 of 12; retry in 30 s", "issue"),
        ("Filter at 37%, 21.5 C, humidity 40, version 1.4.2_0012, build 2023-05-01", "issue"),
        ("v1.2.3.4.5", "issue"),
        ("21.500000000000004", "issue"),
        ("3.5.0", "sonoff-diy"),
        ("Philips-hue.local", "ha-hue"),
        ("BSB002", "ha-hue"),
        ("_hue._tcp.local.", "ha-hue"),
        ("bekens_n", "openbk"),
        ("https://openbekeniot.github.io/webapp/", "openbk"),
        ("esp32s3", "arduino-esp32"),
        ("Govee_H5052", "govee"),
        ("0000ec88-0000-1000-8000-00805f9b34fb", "govee"),
        ("NL22", "nanoleaf"),
        ("3.0.3", "nanoleaf"),
        ("_nanoleafapi._tcp.local.", "nanoleaf"),
        ("Nanoleaf Light Panels", "nanoleaf"),
        ("LYWSD03MMC", "atc"),
        ("0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00", "lmic"),
        ("49.2-64250", "sonos"),
        ("1.8.1.2-2", "sonos"),
        ("0x02000002", "sonos"),
        ("P100", "sonos"),
        ("HCS02DWH1", "home-connect"),
        ("HCS06COM1/01", "home-connect"),
        ("j0zozzoarutv0nu1", "tuya"),
        ("ESP_0711_STR", "wiz"),
        ("ESP10_SOCKET_06", "wiz"),
        ("1.21.0", "wiz"),
        ("WiZ Dimmable White", "wiz"),
    ]
    return [{"value": v, "source": S[s]} for v, s in rows]


# -- corpus: real shapes in the five products' declared fields ---------------------------------


def _info(model: str, fw: str, mac: str, ip: str, extra: dict[str, Any]) -> dict[str, Any]:
    """miIO.info as python-miio's DeviceInfo docstring shows it."""
    base: dict[str, Any] = {
        "ap": {"bssid": BSSID, "rssi": -68, "ssid": "network"},
        "cfg_time": 0,
        "fw_ver": fw,
        "hw_ver": "MW300",
        "life": 24,
        "mac": mac,
        "mmfree": 30312,
        "model": model,
        "netif": {"gw": "192.168.20.1", "localIp": ip, "mask": "255.255.255.0"},
        "ot": "otu",
        "ott_stat": [0, 0, 0, 0],
        "otu_stat": [320, 267, 3, 0, 3, 742],
        "token": TOKEN_MIIO,
        "uid": 1234567890,
        "wifi_fw_ver": "SD878x-14.76.36.p84-702.1.0-WM",
    }
    base.update(extra)
    return base


def corpus() -> dict[str, list[dict[str, Any]]]:
    """product -> capture lines; each line says which identifiers it hides and where from."""
    out: dict[str, list[dict[str, Any]]] = {}

    def add(product: str, kind: str, payload: dict[str, Any], ids: list[Any], src: str) -> None:
        rows = out.setdefault(product, [])
        device = f"d{len(rows) + 1:03d}"
        rows.append(
            {
                "topic": f"miot/{product}/{device}/{kind}",
                "payload": payload,
                "identifiers": ids,
                "source": S[src],
            }
        )

    # mi-home: info (fw_ver, wifi_fw_ver, mcu_fw_ver kept), props (arming, rgb), event params
    p = "mi-home"
    add(p, "info", _info("lumi.gateway.v3", "1.4.1_154", MAC_XIAOMI, IP_LAN, {}), [], "miio-info")
    add(
        p,
        "info",
        _info("lumi.gateway.v3", f"1.4.1_154 mac={MAC_ESP}", MAC_XIAOMI, IP_LAN, {}),
        [MAC_ESP],
        "issue",
    )
    add(
        p,
        "info",
        _info(
            "lumi.gateway.v3",
            "1.4.1_154",
            MAC_XIAOMI,
            IP_LAN,
            {"wifi_fw_ver": "tasmota_C59B5E-7006", "mcu_fw_ver": "0x00158d000278e797"},
        ),
        [MAC_TASMOTA, IEEE_1],
        "tasmota-log",
    )
    add(
        p,
        "info",
        _info(
            "lumi.gateway.v3",
            "1.4.1_154",
            MAC_XIAOMI,
            IP_LAN,
            {"ap": {"bssid": BSSID, "rssi": int(IMEI), "ssid": "network"}},
        ),
        [int(IMEI)],
        "issue",
    )
    add(
        p,
        "props",
        {"method": "props", "params": {"arming": "off", "rgb": 0x286C07A41B9E}},
        [0x286C07A41B9E],
        "issue",
    )
    add(
        p,
        "props",
        {"method": "props", "params": {"arming": "lumi.158d000278e797", "rgb": 0}},
        [IEEE_1],
        "push",
    )
    add(
        p,
        "props",
        {"method": "props", "params": {"arming": "on", "rgb": 3232240686}},
        [IP_LAN],
        "issue",
    )
    add(p, "event", {"method": "event.motion", "params": []}, [], "push")
    add(
        p,
        "event",
        {"method": "{ 0x7E, 0x1E, 0x06, 0xD0, 0x7E, 0xD5, 0xB3, 0x70}", "params": []},
        ["0x7E, 0x1E, 0x06, 0xD0, 0x7E, 0xD5, 0xB3, 0x70"],
        "lmic",
    )
    add(
        p,
        "event",
        {"method": "Nanoleaf Light Panels 53:3b:9b", "params": []},
        ["53:3b:9b"],
        "nanoleaf",
    )
    add(
        p,
        "event",
        {"method": "event.open", "params": ["lumi.158d000278e797", "open"]},
        [IEEE_1],
        "push",
    )
    add(
        p,
        "event",
        {"method": "event.click", "params": [IEEE_1, int(IEEE_1, 16), "click"]},
        [IEEE_1, int(IEEE_1, 16)],
        "z2m-log",
    )
    add(
        p,
        "event",
        {"method": "event.close", "params": [f"Device '{IEEE_2}' joined"]},
        [IEEE_2],
        "z2m-log",
    )
    add(
        p,
        "event",
        {"method": "event.double_click", "params": ["owner jane.doe%2Biot%40example.com", PHONE]},
        [EMAIL, PHONE],
        "seed",
    )
    add(
        p,
        "info",
        {
            "fw_ver": "1.4.1_154",
            "mac": MAC_XIAOMI,
            "DVES_C59B5E": 1,
            "ap": {"rssi": -52, "0x00158d000278e797": "x"},
        },
        [MAC_TASMOTA, IEEE_1],
        "tasmota-log",
    )

    # vendor default names in the one kept field their shape fits (wifi_fw_ver's pattern)
    for fw, ids, src in (
        ("esp32s3-123456", ["24:0A:C4:12:34:56"], "arduino-esp32"),
        ("eWeLink_1000e4c17c", ["1000e4c17c"], "sonoff-diy"),
        ("Nanoleaf-Light-Panels-53-3b-5d", ["53-3b-5d"], "nanoleaf"),
        ("RINCON_000E5884455C01400", ["000E5884455C"], "sonos"),
    ):
        add(
            p,
            "info",
            _info("lumi.gateway.v3", "1.4.1_154", MAC_XIAOMI, IP_LAN, {"wifi_fw_ver": fw}),
            ids,
            src,
        )

    # mi-tv-remote: info (fw, hw), props (power/mute/audio_mode/volume), event and command params
    p = "mi-tv-remote"
    add(p, "info", _info("xiaomi.tv.v1", "2.1.9_0045", MAC_NWT, IP_LAN2, {}), [], "miio-nwt")
    add(
        p,
        "info",
        _info(
            "xiaomi.tv.v1",
            "2.1.9_0045",
            MAC_NWT,
            IP_LAN2,
            {"hw_ver": "ESP-A41B9E", "mcu_fw_ver": "286c.07a4.1b9e"},
        ),
        [MAC_XIAOMI],
        "issue",
    )
    add(
        p,
        "info",
        _info(
            "xiaomi.tv.v1",
            "2.1.9_0045",
            MAC_NWT,
            IP_LAN2,
            {"wifi_fw_ver": "Local MAC: 80:F3:DA:A9:6D:44 IP Address: 192.168.68.229"},
        ),
        [MAC_ESPHOME, IP_LAN2],
        "esphome-log",
    )
    add(
        p,
        "props",
        {
            "method": "props",
            "params": {"power": "on", "mute": "off", "audio_mode": "off", "volume": 30},
        },
        [],
        "issue",
    )
    add(
        p,
        "props",
        {
            "method": "props",
            "params": {
                "power": "host192.168.20.46",
                "mute": "off",
                "audio_mode": "fe80::e8d4:e951:aaa2:2ac1",
                "volume": int(IMEI2),
            },
        },
        [IP_LAN, IP6_LL, int(IMEI2)],
        "iwman",
    )
    add(p, "event", {"method": "event.key_press", "params": ["KEY_HOME"]}, [], "issue")
    add(
        p,
        "event",
        {"method": "event.key_press", "params": ["KEY_HOME", MAC_XIAOMI]},
        [MAC_XIAOMI],
        "issue",
    )
    add(
        p,
        "command",
        {"id": 7, "method": "press_key", "params": ["KEY_HOME", MAC_XIAOMI]},
        [MAC_XIAOMI],
        "issue",
    )
    add(
        p,
        "command",
        {"id": 8, "method": "press_key", "params": ["MAC28:6C:07:A4:1B:9E"]},
        [MAC_XIAOMI],
        "issue",
    )
    add(
        p, "command", {"id": 9, "method": "set_volume", "params": [int(IMEI)]}, [int(IMEI)], "issue"
    )
    add(
        p,
        "command",
        {
            "id": 10,
            "method": "set_audio_mode",
            "params": ["mac=28%3A6C%3A07%3AA4%3A1B%3A9E", "192.168.020.046"],
        },
        [MAC_XIAOMI, IP_LAN],
        "issue",
    )

    # mijia-camera: info (model, fw, hw, life, mmfree), props (power, sdcard_status), event
    p = "mijia-camera"
    add(
        p,
        "info",
        _info("chuangmi.camera.ipc009", "3.5.8_0041", MAC_XIAOMI, IP_LAN, {}),
        [],
        "issue",
    )
    add(
        p,
        "info",
        _info(
            "chuangmi.camera.ipc009",
            "3.5.8_0041",
            MAC_XIAOMI,
            IP_LAN,
            {
                "model": "chuangmi.camera.ipc009 286c07a41b9e",
                "life": int(IMEI),
                "mmfree": int(IEEE_1, 16),
            },
        ),
        [MAC_XIAOMI, int(IMEI), int(IEEE_1, 16)],
        "issue",
    )
    add(
        p,
        "info",
        _info(
            "chuangmi.camera.ipc009",
            "3.5.8_0041",
            MAC_XIAOMI,
            IP_LAN,
            {"hw_ver": "shellyplus1pm-441793d69718", "fw_ver": TOKEN_MIIO},
        ),
        [MAC_SHELLY2, TOKEN_MIIO],
        "mb-shelly",
    )
    add(p, "props", {"method": "props", "params": {"power": "on", "sdcard_status": 0}}, [], "issue")
    add(
        p,
        "props",
        {"method": "props", "params": {"power": "esphome-web-a96d44", "sdcard_status": 3232240686}},
        [MAC_ESPHOME, IP_LAN],
        "esphome-wifi-info",
    )
    add(p, "event", {"method": "event.motion", "params": [1, "ok"]}, [], "issue")
    add(
        p,
        "event",
        {
            "method": "event.motion",
            "params": ["::ffff:81.2.69.142", "[2001:db8:85a3::8a2e:370:7334]:6053"],
        },
        [IP_PUBLIC, IP6_DOC],
        "esphome-wifi-info",
    )
    add(
        p,
        "event",
        {"method": "event.motion", "params": [API_KEY, "shellyswitch-559F55"]},
        [API_KEY, MAC_SHELLY1],
        "openhab-shelly",
    )

    # Vendor names and setup codes in the camera's kept version fields (the three sweeps).
    camera = ("chuangmi.camera.ipc009", "3.5.8_0041", MAC_XIAOMI, IP_LAN)
    versions: list[tuple[dict[str, Any], list[Any], str]] = [
        (
            {"wifi_fw_ver": "OpenBK7231N_12345678", "hw_ver": "esp32c3-ABCDEF"},
            ["24:0A:12:34:56:78", "24:0A:C4:AB:CD:EF"],
            "openbk",
        ),
        ({"wifi_fw_ver": "obk07A41B9E", "hw_ver": "GVH5075_2762"}, [MAC_XIAOMI], "openbk"),
        (
            {"wifi_fw_ver": "ATC_ABCDEF", "hw_ver": "ATC_123456"},
            ["A4:C1:38:AB:CD:EF", "A4:C1:38:12:34:56"],
            "atc",
        ),
        (
            {"wifi_fw_ver": "3497-011-2332", "hw_ver": "wiz_abcabc"},
            [MAC_XIAOMI, "3497-011-2332", "AB:CA:BC:AB:CA:BC"],
            "matter",
        ),
        ({"wifi_fw_ver": "031-45-154"}, [MAC_XIAOMI, "031-45-154"], "homekit"),
    ]
    for extra, ids, src in versions:
        add(p, "info", _info(*camera, extra), ids, src)

    # smartmi: props (power, mode, child_lock, buzzer, aqi, humidity, temp_dec, filter1_life)
    p = "smartmi"
    add(
        p,
        "props",
        {
            "method": "props",
            "params": {
                "power": "on",
                "mode": "silent",
                "aqi": 12,
                "humidity": 40,
                "temp_dec": 215,
                "filter1_life": 80,
                "child_lock": "off",
                "buzzer": "on",
            },
        },
        [],
        "issue",
    )
    add(
        p,
        "props",
        {
            "method": "props",
            "params": {
                "power": "on",
                "mode": "DVES_C59B5E",
                "aqi": int(IMEI2),
                "humidity": 40,
                "temp_dec": 215,
                "filter1_life": 80,
                "child_lock": "28 6C 07 A4 1B 9E",
                "buzzer": "jane.doe+iot@example.com",
            },
        },
        [MAC_TASMOTA, int(IMEI2), MAC_XIAOMI, EMAIL],
        "tasmota-log",
    )
    add(
        p,
        "props",
        {
            "method": "props",
            "params": {
                "power": "lumi-gateway-v3_miio12345678",
                "mode": "favorite",
                "filter1_life": 0x286C07A41B9E,
                "buzzer": BEACONKEY,
            },
        },
        [DID, 0x286C07A41B9E, BEACONKEY],
        "ha-miio",
    )

    # xiaofang-camera: info (model, fw, hw), props (power), event params
    p = "xiaofang-camera"
    add(p, "info", _info("isa.camera.hlc7", "4.1.6_1999", MAC_TASMOTA, IP_LAN, {}), [], "issue")
    add(
        p,
        "info",
        _info(
            "isa.camera.hlc7",
            "4.1.6_1999",
            MAC_TASMOTA,
            IP_LAN,
            {"model": "isa.camera.hlc7 tasmota-C59B5E-7006", "hw_ver": "00:15:8d:00:02:78:e7:97"},
        ),
        [MAC_TASMOTA, IEEE_1],
        "tasmota-log",
    )
    add(p, "props", {"method": "props", "params": {"power": "49-015420-323751-8"}}, [IMEI], "imei")
    add(
        p,
        "event",
        {
            "method": "event.motion",
            "params": ["fe80::e8d4:e951:aaa2:2ac1/64", "192%2E168%2E20%2E46"],
        },
        [IP6_LL, IP_LAN],
        "iwman",
    )
    add(
        p,
        "event",
        {"method": "event.motion", "params": [{"mac": MAC_XIAOMI}, [IEEE_2]]},
        [MAC_XIAOMI, IEEE_2],
        "z2m-bridge",
    )
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def main() -> None:
    _write(HERE / "identifiers" / "leaky_values.jsonl", leaky())
    _write(HERE / "identifiers" / "legit_values.jsonl", legit())
    for product, rows in corpus().items():
        _write(HERE / "corpus" / f"{product}.jsonl", rows)


if __name__ == "__main__":
    main()
